/*
 * pg_auth.c - the PostgreSQL statements of auth_store.h (pg_auth.h): users,
 * recovery codes, sessions, API tokens, the per-account login throttle and
 * the webhook replay guard, on the tables of PG_MIGRATIONS 2 in pg.c.
 *
 * Owns statement slots 64..151 of pg_internal.h (64..159 are pg_auth.c's)
 * and nothing else. Every statement is a constant string with $n
 * parameters.
 *
 * Several nodes share these rows, each statement on its own snapshot (read
 * committed). What must not race:
 *   - A TOTP step, a recovery code, a live session revoked, a replay-guard
 *     signature: each is ONE conditional UPDATE (or INSERT ... ON CONFLICT
 *     DO UPDATE ... WHERE) whose row count is the answer. PostgreSQL makes
 *     the second of two concurrent writers wait for the first's row lock
 *     and then re-checks the WHERE on the row the first one left, so two
 *     nodes cannot both win.
 *   - The login throttle (read, let auth/throttle.c edit, write back): the
 *     transaction first takes pg_advisory_xact_lock(AUTH_LOCK, hashtext(
 *     account)), so the updates of one account take turns across nodes
 *     even when its row does not exist yet (a row lock would lock nothing
 *     then, and two first failures would both insert "1").
 *   - Replacing recovery codes locks the user's row first, so two
 *     concurrent replacements leave one set, not the union of both.
 *   - The replay guard: on one SQLite node a pending claim of another run
 *     is a claim of a process that died. Here it may be a live node's, so
 *     each connection that claims holds a shared session advisory lock of
 *     its run (RUN_LOCK, hashtext(run)) until it closes, and a pending
 *     claim is taken over only when nobody holds its run's lock: a request
 *     replayed to two nodes at once is claimed by one.
 *
 * Must never: decide policy (src/auth/ does), see or log a secret in clear
 * (it receives hashes and sealed blobs only), build SQL from data, or hold
 * a transaction across calls.
 */
#include "store/pg_auth.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

#define SLOT_BASE 64

enum {
    A_USER_INS, A_USER_BY_NAME, A_USER_BY_ID, A_USER_BY_SUBJECT,
    A_USER_SUBJECT, A_USER_LIST, A_USER_ROLE, A_USER_PW, A_USER_DISABLED,
    A_USER_TOTP, A_USER_TOTP_NEW, A_USER_STEP, A_USER_DEL, A_USER_COUNT_ROLE,
    A_USER_LOCK,
    A_RC_DEL, A_RC_INS, A_RC_USE, A_RC_LEFT,
    A_SES_INS, A_SES_GET, A_SES_TOUCH, A_SES_MFA, A_SES_REVOKE,
    A_SES_REVOKE_USER, A_SES_LIST, A_SES_LIST_USER, A_SES_PURGE,
    A_TOK_INS, A_TOK_BY_HASH, A_TOK_GET, A_TOK_TOUCH, A_TOK_REVOKE,
    A_TOK_LIST, A_TOK_REVOKE_OWNER,
    A_THR_LOCK, A_THR_GET, A_THR_PUT, A_THR_DEL, A_THR_PRUNE,
    A_RPL_CLAIM, A_RPL_DONE, A_RPL_RELEASE, A_RPL_PRUNE, A_RPL_ALIVE,
    A_ADMINS_LOCK, A_USER_IS_ADMIN,
    A_LAST
};
_Static_assert(SLOT_BASE + A_LAST <= 152,
               "pg_auth.c owns statement slots 64..151");

/* pg_advisory_xact_lock class of the login throttle (two-key form, so it
 * never meets pg.c's one-key schema lock); the second key is
 * hashtext(account). */
#define AUTH_LOCK "1466462850"
/* pg_advisory_lock_shared class of a live process run of the replay guard
 * (second key hashtext(run)): every connection that claims for a run holds
 * it until it closes, so a node can tell a pending claim of a live node
 * (refused) from one of a process that died (taken over). */
#define RUN_LOCK "1466462851"

#define USER_COLS "id, name, role, password_hash, must_change, totp_sealed," \
    " totp_enabled, totp_last_step, oidc_subject, disabled, created_at," \
    " updated_at"
#define SES_COLS "id_hash, user_id, csrf_hash, address, mfa, created_at," \
    " last_seen_at, expires_at, revoked_at"
#define TOK_COLS "t.id, t.name, t.role, t.created_by, t.created_at," \
    " t.expires_at, t.last_used_at, t.revoked_at, t.owner_id, u.name"
#define TOK_FROM " FROM tokens t LEFT JOIN users u ON u.id = t.owner_id"
#define THR_COLS "failures, first_at, level, locked_until, updated_at"

static const char *const SQL_AUTH[A_LAST] = {
    [A_USER_INS] = "INSERT INTO users(name, role, password_hash, must_change,"
        " created_at, updated_at) VALUES($1, $2, $3, $4, $5, $5)"
        " ON CONFLICT(name) DO NOTHING RETURNING id",
    [A_USER_BY_NAME] = "SELECT " USER_COLS " FROM users WHERE name = $1",
    [A_USER_BY_ID] = "SELECT " USER_COLS " FROM users WHERE id = $1",
    [A_USER_BY_SUBJECT] = "SELECT " USER_COLS " FROM users"
        " WHERE oidc_subject = $1",
    [A_USER_SUBJECT] = "UPDATE users SET oidc_subject = $2, updated_at = $3"
        " WHERE id = $1",
    [A_USER_LIST] = "SELECT id, name, role, NULL::text, must_change,"
        " NULL::bytea, totp_enabled, totp_last_step, oidc_subject, disabled,"
        " created_at, updated_at FROM users ORDER BY name",
    [A_USER_ROLE] = "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1",
    [A_USER_PW] = "UPDATE users SET password_hash = $2, must_change = $3,"
        " updated_at = $4 WHERE id = $1",
    [A_USER_DISABLED] = "UPDATE users SET disabled = $2, updated_at = $3"
        " WHERE id = $1",
    [A_USER_TOTP] = "UPDATE users SET totp_enabled = 1, updated_at = $2"
        " WHERE id = $1 AND totp_sealed IS NOT NULL",
    [A_USER_TOTP_NEW] = "UPDATE users SET totp_sealed = $2, totp_enabled = 0,"
        " totp_last_step = 0, updated_at = $3 WHERE id = $1",
    /* One conditional UPDATE: a second node using the same step waits for
     * the first's row lock, then finds totp_last_step < $2 false. */
    [A_USER_STEP] = "UPDATE users SET totp_last_step = $2 WHERE id = $1"
        " AND totp_last_step < $2",
    [A_USER_DEL] = "DELETE FROM users WHERE id = $1",
    [A_USER_COUNT_ROLE] = "SELECT COUNT(*) FROM users WHERE role = $1"
        " AND disabled = 0",
    [A_USER_LOCK] = "SELECT id FROM users WHERE id = $1 FOR UPDATE",
    /* changes that could leave no enabled administrator take turns
     * ("Wadm"), whatever the node */
    [A_ADMINS_LOCK] = "SELECT pg_advisory_xact_lock(1466000493)",
    [A_USER_IS_ADMIN] = "SELECT COUNT(*) FROM users WHERE id = $1"
        " AND role = 'admin' AND disabled = 0",
    [A_RC_DEL] = "DELETE FROM recovery_codes WHERE user_id = $1",
    [A_RC_INS] = "INSERT INTO recovery_codes(user_id, code_hash)"
        " VALUES($1, $2) ON CONFLICT DO NOTHING",
    /* One conditional UPDATE: a code used by two nodes at once is used
     * by one (the other re-checks used_at IS NULL after the first). */
    [A_RC_USE] = "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1"
        " AND code_hash = $2 AND used_at IS NULL",
    [A_RC_LEFT] = "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1"
        " AND used_at IS NULL",
    [A_SES_INS] = "INSERT INTO sessions(" SES_COLS ")"
        " VALUES($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
    [A_SES_GET] = "SELECT " SES_COLS " FROM sessions WHERE id_hash = $1",
    [A_SES_TOUCH] = "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1"
        " AND revoked_at IS NULL AND last_seen_at < $2",
    [A_SES_MFA] = "UPDATE sessions SET mfa = 1 WHERE id_hash = $1"
        " AND revoked_at IS NULL",
    [A_SES_REVOKE] = "UPDATE sessions SET revoked_at = $3 WHERE id_hash = $1"
        " AND revoked_at IS NULL AND ($2::bigint <= 0 OR user_id = $2::bigint)",
    [A_SES_REVOKE_USER] = "UPDATE sessions SET revoked_at = $2"
        " WHERE user_id = $1 AND revoked_at IS NULL"
        " AND id_hash IS DISTINCT FROM COALESCE($3::text, '')",
    [A_SES_LIST] = "SELECT " SES_COLS " FROM sessions WHERE revoked_at IS NULL"
        " AND expires_at > $1 ORDER BY created_at DESC, id_hash COLLATE \"C\"",
    [A_SES_LIST_USER] = "SELECT " SES_COLS " FROM sessions WHERE user_id = $2"
        " AND revoked_at IS NULL AND expires_at > $1"
        " ORDER BY created_at DESC, id_hash COLLATE \"C\"",
    [A_SES_PURGE] = "DELETE FROM sessions WHERE expires_at <= $1"
        " OR last_seen_at < $2 OR (revoked_at IS NOT NULL AND revoked_at < $3)",
    [A_TOK_INS] = "INSERT INTO tokens(id, name, hash, role, created_by,"
        " created_at, expires_at, owner_id) VALUES($1, $2, $3, $4, $5, $6, $7,"
        " $8)",
    [A_TOK_BY_HASH] = "SELECT " TOK_COLS TOK_FROM " WHERE t.hash = $1",
    [A_TOK_GET] = "SELECT " TOK_COLS TOK_FROM " WHERE t.id = $1",
    [A_TOK_TOUCH] = "UPDATE tokens SET last_used_at = $2 WHERE id = $1",
    [A_TOK_REVOKE] = "UPDATE tokens SET revoked_at = $2 WHERE id = $1"
        " AND revoked_at IS NULL",
    [A_TOK_LIST] = "SELECT " TOK_COLS TOK_FROM
        " ORDER BY t.created_at DESC, t.id DESC",
    [A_TOK_REVOKE_OWNER] = "UPDATE tokens SET revoked_at = $2"
        " WHERE owner_id = $1 AND revoked_at IS NULL",
    /* The account's updates take turns across nodes, row or no row. */
    [A_THR_LOCK] = "SELECT pg_advisory_xact_lock(" AUTH_LOCK ","
        " hashtext($1::text))",
    [A_THR_GET] = "SELECT " THR_COLS " FROM login_throttle WHERE account = $1",
    [A_THR_PUT] = "INSERT INTO login_throttle(account, " THR_COLS ")"
        " VALUES($1, $2, $3, $4, $5, $6) ON CONFLICT(account) DO UPDATE SET"
        " failures = excluded.failures, first_at = excluded.first_at,"
        " level = excluded.level, locked_until = excluded.locked_until,"
        " updated_at = excluded.updated_at",
    [A_THR_DEL] = "DELETE FROM login_throttle WHERE account = $1",
    [A_THR_PRUNE] = "DELETE FROM login_throttle WHERE updated_at < $1"
        " AND locked_until < $2",
    /* One statement: of two nodes claiming at once, the second waits for
     * the first's row, then evaluates the WHERE on it. A pending claim of
     * another run is taken over only when no connection holds that run's
     * RUN_LOCK any more (its process died); a live node's is refused. */
    [A_RPL_CLAIM] = "INSERT INTO replay_guard(scope, sig, until, run, done)"
        " VALUES($1, $2, $3, $4, 0) ON CONFLICT(scope, sig) DO UPDATE SET"
        " until = excluded.until, run = excluded.run, done = 0"
        " WHERE replay_guard.until < $5"
        " OR (replay_guard.done = 0 AND replay_guard.run <> excluded.run"
        "  AND NOT EXISTS (SELECT 1 FROM pg_locks l"
        "   WHERE l.locktype = 'advisory' AND l.granted"
        "   AND l.classid = " RUN_LOCK "::oid AND l.objsubid = 2"
        "   AND l.objid = hashtext(replay_guard.run)::oid))",
    [A_RPL_DONE] = "UPDATE replay_guard SET done = 1 WHERE scope = $1"
        " AND sig = $2",
    [A_RPL_RELEASE] = "DELETE FROM replay_guard WHERE scope = $1 AND sig = $2"
        " AND run = $3 AND done = 0",
    [A_RPL_PRUNE] = "DELETE FROM replay_guard WHERE until < $1",
    /* Held by this connection until it closes (counted, never waited for:
     * shared, and nobody takes it exclusively). */
    [A_RPL_ALIVE] = "SELECT pg_advisory_lock_shared(" RUN_LOCK ","
        " hashtext($1::text))",
};

/* ---- helpers ------------------------------------------------------------------ */

static PGresult *run(struct pg_store *p, int id, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, SLOT_BASE + id, SQL_AUTH[id], a, what, err);
}

static int run_done(struct pg_store *p, int id, const struct pg_args *a,
                    const char *what, int64_t *changed, struct error *err)
{
    return pg_run_done(p, SLOT_BASE + id, SQL_AUTH[id], a, what, changed,
                       err);
}

/* Run an UPDATE/DELETE: 0 when a row changed, 1 when none did, -1. */
static int run_changed(struct pg_store *p, int id, const struct pg_args *a,
                       const char *what, struct error *err)
{
    int64_t n = 0;
    if (run_done(p, id, a, what, &n, err) < 0)
        return -1;
    return n > 0 ? 0 : 1;
}

/* A one-row, one-integer query. -1 on error. */
static int64_t run_count(struct pg_store *p, int id, const struct pg_args *a,
                         const char *what, struct error *err)
{
    PGresult *r = run(p, id, a, what, err);
    if (r == NULL)
        return -1;
    int64_t v = PQntuples(r) == 1 ? pg_val_int(r, 0, 0) : 0;
    PQclear(r);
    return v;
}

static void val_fixed(const PGresult *r, int row, int col, char *out,
                      size_t n)
{
    const char *t = PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
    size_t len = strlen(t);
    if (len >= n)
        len = n - 1;
    memcpy(out, t, len);
    out[len] = '\0';
}

/* ---- users ------------------------------------------------------------------------ */

static void user_row(const PGresult *r, int i, struct store_user *u)
{
    memset(u, 0, sizeof(*u));
    u->id = pg_val_int(r, i, 0);
    u->name = pg_val_dup(r, i, 1);
    u->role = pg_val_dup(r, i, 2);
    u->password_hash = pg_val_dup(r, i, 3);
    u->must_change = (int)pg_val_int(r, i, 4);
    size_t len = 0;
    unsigned char *blob = pg_val_blob(r, i, 5, &len);
    if (blob != NULL && len > 0) {
        u->totp_sealed = blob;
        u->totp_sealed_len = len;
    } else {
        free(blob);
    }
    u->totp_enabled = (int)pg_val_int(r, i, 6);
    u->totp_last_step = pg_val_int(r, i, 7);
    u->oidc_subject = pg_val_dup(r, i, 8);
    u->disabled = (int)pg_val_int(r, i, 9);
    u->created_at = pg_val_int(r, i, 10);
    u->updated_at = pg_val_int(r, i, 11);
}

int pgs_user_create(struct pg_store *p, const char *name, const char *role,
                    const char *password_hash, int must_change, int64_t now,
                    int64_t *id, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, name);
    pg_arg_text(&a, role);
    pg_arg_text(&a, password_hash);
    pg_arg_int(&a, must_change ? 1 : 0);
    pg_arg_int(&a, now);
    PGresult *r = run(p, A_USER_INS, &a, "insert user", err);
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    if (rc == 0 && id)
        *id = pg_val_int(r, 0, 0);
    PQclear(r);
    return rc;
}

static int user_get(struct pg_store *p, int id, const struct pg_args *a,
                    struct store_user *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    PGresult *r = run(p, id, a, "read user", err);
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    if (rc == 0)
        user_row(r, 0, out);
    PQclear(r);
    return rc;
}

int pgs_user_get_by_name(struct pg_store *p, const char *name,
                         struct store_user *out, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, name);
    return user_get(p, A_USER_BY_NAME, &a, out, err);
}

int pgs_user_get_by_id(struct pg_store *p, int64_t id, struct store_user *out,
                       struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    return user_get(p, A_USER_BY_ID, &a, out, err);
}

int pgs_user_get_by_subject(struct pg_store *p, const char *subject,
                            struct store_user *out, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, subject);
    return user_get(p, A_USER_BY_SUBJECT, &a, out, err);
}

int pgs_user_set_subject(struct pg_store *p, int64_t id, const char *subject,
                         int64_t now, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    pg_arg_text(&a, subject);
    pg_arg_int(&a, now);
    return run_changed(p, A_USER_SUBJECT, &a, "set OIDC subject", err);
}

int pgs_user_list(struct pg_store *p, struct store_user **out, size_t *n,
                  struct error *err)
{
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, A_USER_LIST, NULL, "list users", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    if (rows > 0 && (*out = calloc((size_t)rows, sizeof(**out))) == NULL) {
        PQclear(r);
        return error_set(err, "list users: out of memory");
    }
    for (int i = 0; i < rows; i++)
        user_row(r, i, &(*out)[i]);
    *n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* ---- the last enabled administrator ------------------------------------ */

/* What a guarded change writes (one of the three below). */
struct user_change {
    int64_t id, now;
    const char *role;           /* set_role */
    int disabled;               /* set_disabled */
    int64_t revoked;            /* delete: tokens revoked */
};

/* write (0 done, 1 no such user, -1) and the check that an enabled
 * administrator is left, in one transaction holding the administrators'
 * advisory lock: two nodes demoting the last two admins at once take
 * turns, and the second sees the first's change (read committed: its
 * count is a new statement after the lock). 2 (nothing written) when the
 * change would leave none. */
static int admin_guarded(struct pg_store *p, struct user_change *c,
                         int (*write)(struct pg_store *, struct user_change *,
                                      struct error *),
                         struct error *err)
{
    struct pg_args a = {0}, admin = {0};
    pg_arg_int(&a, c->id);
    pg_arg_text(&admin, "admin");
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int64_t was = run_done(p, A_ADMINS_LOCK, NULL, "lock the administrators",
                           NULL, err) < 0 ? -1
                  : run_count(p, A_USER_IS_ADMIN, &a, "look up a user", err);
    int rc = was < 0 ? -1 : write(p, c, err);
    if (rc == 0 && was > 0) {
        int64_t left = run_count(p, A_USER_COUNT_ROLE, &admin,
                                 "count users", err);
        rc = left < 0 ? -1 : left == 0 ? 2 : 0;
    }
    if (rc != 0) {
        pg_tx_fail(p);
        return rc;
    }
    return pg_tx_end(p, err);
}

static int role_write(struct pg_store *p, struct user_change *c,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, c->id);
    pg_arg_text(&a, c->role);
    pg_arg_int(&a, c->now);
    return run_changed(p, A_USER_ROLE, &a, "update user role", err);
}

int pgs_user_set_role(struct pg_store *p, int64_t id, const char *role,
                      int64_t now, struct error *err)
{
    struct user_change c = { .id = id, .now = now, .role = role };
    return admin_guarded(p, &c, role_write, err);
}

int pgs_user_set_password(struct pg_store *p, int64_t id, const char *hash,
                          int must_change, int64_t now, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    pg_arg_text(&a, hash);
    pg_arg_int(&a, must_change ? 1 : 0);
    pg_arg_int(&a, now);
    return run_changed(p, A_USER_PW, &a, "update user password", err);
}

static int disabled_write(struct pg_store *p, struct user_change *c,
                          struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, c->id);
    pg_arg_int(&a, c->disabled ? 1 : 0);
    pg_arg_int(&a, c->now);
    return run_changed(p, A_USER_DISABLED, &a, "update user", err);
}

int pgs_user_set_disabled(struct pg_store *p, int64_t id, int disabled,
                          int64_t now, struct error *err)
{
    struct user_change c = { .id = id, .now = now, .disabled = disabled };
    return admin_guarded(p, &c, disabled_write, err);
}

int pgs_user_set_totp(struct pg_store *p, int64_t id,
                      const unsigned char *sealed, size_t len, int64_t now,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    if (sealed != NULL && len > 0)
        pg_arg_blob(&a, sealed, len);
    else
        pg_arg_blob(&a, NULL, 0);
    pg_arg_int(&a, now);
    return run_changed(p, A_USER_TOTP_NEW, &a, "update user TOTP", err);
}

int pgs_user_enable_totp(struct pg_store *p, int64_t id, int64_t now,
                         struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    pg_arg_int(&a, now);
    return run_changed(p, A_USER_TOTP, &a, "enable user TOTP", err);
}

int pgs_user_totp_step(struct pg_store *p, int64_t id, int64_t step,
                       struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    pg_arg_int(&a, step);
    return run_changed(p, A_USER_STEP, &a, "record TOTP step", err);
}

static int delete_write(struct pg_store *p, struct user_change *c,
                        struct error *err)
{
    struct pg_args a = {0}, d = {0};
    pg_arg_int(&a, c->id);
    pg_arg_int(&a, c->now);
    pg_arg_int(&d, c->id);
    int64_t deleted = 0;
    if (run_done(p, A_TOK_REVOKE_OWNER, &a, "revoke the user's tokens",
                 &c->revoked, err) < 0 ||
        run_done(p, A_USER_DEL, &d, "delete user", &deleted, err) < 0)
        return -1;
    return deleted > 0 ? 0 : 1;
}

int pgs_user_delete(struct pg_store *p, int64_t id, int64_t now,
                    int *tokens_revoked, struct error *err)
{
    struct user_change c = { .id = id, .now = now };
    int rc = admin_guarded(p, &c, delete_write, err);
    if (rc == 0 && tokens_revoked)
        *tokens_revoked = (int)c.revoked;
    return rc;
}

int64_t pgs_user_count_role(struct pg_store *p, const char *role,
                            struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, role);
    return run_count(p, A_USER_COUNT_ROLE, &a, "count users", err);
}

/* ---- recovery codes ------------------------------------------------------------- */

int pgs_recovery_clear(struct pg_store *p, int64_t user_id, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, user_id);
    return run_done(p, A_RC_DEL, &a, "delete recovery codes", NULL, err);
}

int pgs_recovery_replace(struct pg_store *p, int64_t user_id,
                         const char *const *hashes, size_t n, int64_t now,
                         struct error *err)
{
    (void)now;
    struct pg_args u = {0};
    pg_arg_int(&u, user_id);
    if (pg_tx_begin(p, err) < 0)
        return -1;
    /* The user's row lock: replacements of one user's codes take turns. */
    PGresult *r = run(p, A_USER_LOCK, &u, "lock user", err);
    if (r == NULL)
        return pg_tx_fail(p);
    PQclear(r);
    if (pgs_recovery_clear(p, user_id, err) < 0)
        return pg_tx_fail(p);
    for (size_t i = 0; i < n; i++) {
        struct pg_args a = {0};
        pg_arg_int(&a, user_id);
        pg_arg_text(&a, hashes[i]);
        if (run_done(p, A_RC_INS, &a, "insert recovery code", NULL, err) < 0)
            return pg_tx_fail(p);
    }
    return pg_tx_end(p, err);
}

int pgs_recovery_consume(struct pg_store *p, int64_t user_id,
                         const char *hash, int64_t now, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, user_id);
    pg_arg_text(&a, hash);
    pg_arg_int(&a, now);
    return run_changed(p, A_RC_USE, &a, "use recovery code", err);
}

int64_t pgs_recovery_left(struct pg_store *p, int64_t user_id,
                          struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, user_id);
    return run_count(p, A_RC_LEFT, &a, "count recovery codes", err);
}

/* ---- sessions ----------------------------------------------------------------------- */

static void session_row(const PGresult *r, int i, struct store_session *x)
{
    memset(x, 0, sizeof(*x));
    val_fixed(r, i, 0, x->id_hash, sizeof(x->id_hash));
    x->user_id = pg_val_int(r, i, 1);
    val_fixed(r, i, 2, x->csrf_hash, sizeof(x->csrf_hash));
    x->address = pg_val_dup(r, i, 3);
    x->mfa = (int)pg_val_int(r, i, 4);
    x->created_at = pg_val_int(r, i, 5);
    x->last_seen_at = pg_val_int(r, i, 6);
    x->expires_at = pg_val_int(r, i, 7);
    x->revoked_at = pg_val_int(r, i, 8);
}

int pgs_session_create(struct pg_store *p, const struct store_session *x,
                       struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, x->id_hash);
    pg_arg_int(&a, x->user_id);
    pg_arg_text(&a, x->csrf_hash);
    pg_arg_text(&a, x->address);
    pg_arg_int(&a, x->mfa ? 1 : 0);
    pg_arg_int(&a, x->created_at);
    pg_arg_int(&a, x->last_seen_at);
    pg_arg_int(&a, x->expires_at);
    return run_done(p, A_SES_INS, &a, "insert session", NULL, err);
}

int pgs_session_get(struct pg_store *p, const char *id_hash,
                    struct store_session *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    struct pg_args a = {0};
    pg_arg_text(&a, id_hash);
    PGresult *r = run(p, A_SES_GET, &a, "read session", err);
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    if (rc == 0)
        session_row(r, 0, out);
    PQclear(r);
    return rc;
}

int pgs_session_touch(struct pg_store *p, const char *id_hash, int64_t now,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id_hash);
    pg_arg_int(&a, now);
    return run_done(p, A_SES_TOUCH, &a, "touch session", NULL, err);
}

int pgs_session_set_mfa(struct pg_store *p, const char *id_hash,
                        struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id_hash);
    return run_changed(p, A_SES_MFA, &a, "update session", err);
}

int pgs_session_revoke(struct pg_store *p, const char *id_hash,
                       int64_t user_id, int64_t now, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id_hash);
    pg_arg_int(&a, user_id);
    pg_arg_int(&a, now);
    return run_changed(p, A_SES_REVOKE, &a, "revoke session", err);
}

int pgs_session_revoke_user(struct pg_store *p, int64_t user_id,
                            const char *keep, int64_t now, int *count,
                            struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, user_id);
    pg_arg_int(&a, now);
    pg_arg_text(&a, keep);
    int64_t n = 0;
    if (run_done(p, A_SES_REVOKE_USER, &a, "revoke sessions", &n, err) < 0)
        return -1;
    if (count)
        *count = (int)n;
    return 0;
}

int pgs_session_list(struct pg_store *p, int64_t user_id, int64_t now,
                     struct store_session **out, size_t *n,
                     struct error *err)
{
    *out = NULL;
    *n = 0;
    struct pg_args a = {0};
    pg_arg_int(&a, now);
    if (user_id > 0)
        pg_arg_int(&a, user_id);
    PGresult *r = run(p, user_id > 0 ? A_SES_LIST_USER : A_SES_LIST, &a,
                      "list sessions", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    if (rows > 0 && (*out = calloc((size_t)rows, sizeof(**out))) == NULL) {
        PQclear(r);
        return error_set(err, "list sessions: out of memory");
    }
    for (int i = 0; i < rows; i++)
        session_row(r, i, &(*out)[i]);
    *n = (size_t)rows;
    PQclear(r);
    return 0;
}

int pgs_session_delete_expired(struct pg_store *p, int64_t now,
                               int64_t idle_before, int64_t revoked_before,
                               int *count, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, now);
    pg_arg_int(&a, idle_before);
    pg_arg_int(&a, revoked_before);
    int64_t n = 0;
    if (run_done(p, A_SES_PURGE, &a, "delete expired sessions", &n, err) < 0)
        return -1;
    if (count)
        *count = (int)n;
    return 0;
}

/* ---- API tokens ---------------------------------------------------------------------- */

static void token_row(const PGresult *r, int i, struct store_token *t)
{
    memset(t, 0, sizeof(*t));
    val_fixed(r, i, 0, t->id, sizeof(t->id));
    t->name = pg_val_dup(r, i, 1);
    t->role = pg_val_dup(r, i, 2);
    t->created_by = pg_val_dup(r, i, 3);
    t->created_at = pg_val_int(r, i, 4);
    t->expires_at = pg_val_int(r, i, 5);
    t->last_used_at = pg_val_int(r, i, 6);
    t->revoked_at = pg_val_int(r, i, 7);
    t->owner_id = pg_val_int(r, i, 8);
    t->owner = pg_val_dup(r, i, 9);
}

int pgs_token_create(struct pg_store *p, const struct store_token *t,
                     const char *hash, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, t->id);
    pg_arg_text(&a, t->name);
    pg_arg_text(&a, hash);
    pg_arg_text(&a, t->role);
    pg_arg_text(&a, t->created_by);
    pg_arg_int(&a, t->created_at);
    if (t->expires_at > 0)
        pg_arg_int(&a, t->expires_at);
    else
        pg_arg_text(&a, NULL);
    if (t->owner_id > 0)
        pg_arg_int(&a, t->owner_id);
    else
        pg_arg_text(&a, NULL);
    return run_done(p, A_TOK_INS, &a, "insert token", NULL, err);
}

static int token_get(struct pg_store *p, int id, const struct pg_args *a,
                     struct store_token *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    PGresult *r = run(p, id, a, "read token", err);
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    if (rc == 0)
        token_row(r, 0, out);
    PQclear(r);
    return rc;
}

int pgs_token_get_by_hash(struct pg_store *p, const char *hash,
                          struct store_token *out, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, hash);
    return token_get(p, A_TOK_BY_HASH, &a, out, err);
}

int pgs_token_get(struct pg_store *p, const char *id, struct store_token *out,
                  struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    return token_get(p, A_TOK_GET, &a, out, err);
}

int pgs_token_touch(struct pg_store *p, const char *id, int64_t now,
                    struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    pg_arg_int(&a, now);
    return run_done(p, A_TOK_TOUCH, &a, "touch token", NULL, err);
}

int pgs_token_revoke(struct pg_store *p, const char *id, int64_t now,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    pg_arg_int(&a, now);
    return run_changed(p, A_TOK_REVOKE, &a, "revoke token", err);
}

int pgs_token_list(struct pg_store *p, struct store_token **out, size_t *n,
                   struct error *err)
{
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, A_TOK_LIST, NULL, "list tokens", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    if (rows > 0 && (*out = calloc((size_t)rows, sizeof(**out))) == NULL) {
        PQclear(r);
        return error_set(err, "list tokens: out of memory");
    }
    for (int i = 0; i < rows; i++)
        token_row(r, i, &(*out)[i]);
    *n = (size_t)rows;
    PQclear(r);
    return 0;
}

/* ---- the per-account login throttle ----------------------------------------------- */

int pgs_throttle_get(struct pg_store *p, const char *account,
                     struct store_throttle *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    struct pg_args a = {0};
    pg_arg_text(&a, account);
    PGresult *r = run(p, A_THR_GET, &a, "read login throttle", err);
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    if (rc == 0) {
        out->failures = (int)pg_val_int(r, 0, 0);
        out->first_at = pg_val_int(r, 0, 1);
        out->level = (int)pg_val_int(r, 0, 2);
        out->locked_until = pg_val_int(r, 0, 3);
        out->updated_at = pg_val_int(r, 0, 4);
    }
    PQclear(r);
    return rc;
}

int pgs_throttle_clear(struct pg_store *p, const char *account,
                       struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, account);
    return run_done(p, A_THR_DEL, &a, "clear login throttle", NULL, err);
}

static int throttle_put(struct pg_store *p, const char *account,
                        const struct store_throttle *t, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, account);
    pg_arg_int(&a, t->failures);
    pg_arg_int(&a, t->first_at);
    pg_arg_int(&a, t->level);
    pg_arg_int(&a, t->locked_until);
    pg_arg_int(&a, t->updated_at);
    return run_done(p, A_THR_PUT, &a, "write login throttle", NULL, err);
}

int pgs_throttle_update(struct pg_store *p, const char *account,
                        int (*update)(struct store_throttle *t, void *arg),
                        void *arg, int64_t now, int64_t prune_before,
                        struct error *err)
{
    struct store_throttle t;
    struct pg_args k = {0}, pr = {0};
    pg_arg_text(&k, account);
    pg_arg_int(&pr, prune_before);
    pg_arg_int(&pr, now);
    if (pg_tx_begin(p, err) < 0)
        return -1;
    /* Taken before the read: the account's read-edit-write cycles take
     * turns across nodes until this transaction ends. */
    PGresult *r = run(p, A_THR_LOCK, &k, "lock login throttle", err);
    if (r == NULL)
        return pg_tx_fail(p);
    PQclear(r);
    if (run_done(p, A_THR_PRUNE, &pr, "prune login throttle", NULL, err) < 0 ||
        pgs_throttle_get(p, account, &t, err) < 0)
        return pg_tx_fail(p);
    int rc = update(&t, arg) == 0 ? throttle_put(p, account, &t, err)
                                  : pgs_throttle_clear(p, account, err);
    if (rc < 0)
        return pg_tx_fail(p);
    return pg_tx_end(p, err);
}

/* ---- webhook HMAC signatures seen --------------------------------------------------- */

int pgs_replay_claim(struct pg_store *p, const char *scope, const char *sig,
                     int64_t until, const char *run_id, int64_t now,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, scope);
    pg_arg_text(&a, sig);
    pg_arg_int(&a, until);
    pg_arg_text(&a, run_id);
    pg_arg_int(&a, now);
    struct pg_args r = {0};
    pg_arg_text(&r, run_id);
    PGresult *res = run(p, A_RPL_ALIVE, &r, "mark the run alive", err);
    if (res == NULL)
        return -1;
    PQclear(res);
    return run_changed(p, A_RPL_CLAIM, &a, "claim a signature", err);
}

int pgs_replay_done(struct pg_store *p, const char *scope, const char *sig,
                    struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, scope);
    pg_arg_text(&a, sig);
    return run_done(p, A_RPL_DONE, &a, "record a signature", NULL, err);
}

int pgs_replay_release(struct pg_store *p, const char *scope, const char *sig,
                       const char *run_id, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, scope);
    pg_arg_text(&a, sig);
    pg_arg_text(&a, run_id);
    return run_done(p, A_RPL_RELEASE, &a, "release a signature", NULL, err);
}

int pgs_replay_prune(struct pg_store *p, int64_t now, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, now);
    return run_done(p, A_RPL_PRUNE, &a, "prune signatures", NULL, err);
}
