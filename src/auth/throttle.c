/*
 * throttle.c - the per-account throttle of failed logins (R22), beside the
 * per-address bans of net/defender.c: many addresses, each under the ban
 * threshold, cannot together try passwords or TOTP codes of one account
 * without limit.
 *
 * Owns the policy of the login_throttle rows (auth_store.h): after
 * a->throttle_after failures of one user name within throttle_window_ms
 * the name is locked for throttle_lock_ms; while it has a lock level every
 * further failure locks it again for twice as long, up to
 * max(AUTH_THROTTLE_MAX_MS, throttle_lock_ms); a level is forgiven after a
 * clean max-lock period; a successful login clears the row. A locked name
 * is refused before any password check (no Argon2id work). Unknown names
 * are counted exactly like known ones, and every invalid name shares one
 * row, so the answer never tells whether a user exists. The rows live in
 * the database: a restart does not unlock an account, and every listener
 * thread and process sees the same counts.
 *
 * Must never: run a password check for a locked name; tell a caller
 * anything but "locked, try again after N s"; store anything but a user
 * name and counters.
 */
#include "auth/auth_internal.h"

#include <stdio.h>
#include <string.h>

#include "util/log.h"

/* The row of a name: the name itself when it could be a user name, one
 * shared row for every other string ('(' is never in a user name). */
static const char *throttle_key(const char *name)
{
    return auth_name_valid(name) ? name : "(invalid)";
}

static int64_t throttle_max(const struct auth *a)
{
    return a->throttle_lock_ms > AUTH_THROTTLE_MAX_MS ? a->throttle_lock_ms
                                                      : AUTH_THROTTLE_MAX_MS;
}

/* lock_ms * 2^(level-1), capped. */
static int64_t throttle_lock(const struct auth *a, int level)
{
    int64_t t = a->throttle_lock_ms, max = throttle_max(a);
    for (int i = 1; i < level && t < max; i++)
        t *= 2;
    return t < max ? t : max;
}

int auth_throttle_check(struct auth *a, const char *name, int64_t *retry_ms,
                        struct error *err)
{
    struct store_throttle t;
    *retry_ms = 0;
    if (a->throttle_after <= 0)
        return 0;
    if (store_throttle_get(a->st, throttle_key(name), &t, err) < 0)
        return -1;
    int64_t now = auth_now(a);
    if (t.locked_until <= now)
        return 0;
    *retry_ms = t.locked_until - now;
    return 1;
}

struct throttle_count {
    const struct auth *a;
    int64_t now;
    int locked;                     /* this failure started a lock */
    struct store_throttle row;      /* the row after it */
};

/* One more failure in row t (store_throttle_update's callback). */
static int throttle_count_one(struct store_throttle *t, void *arg)
{
    struct throttle_count *c = arg;
    const struct auth *a = c->a;
    int64_t now = c->now;
    if (t->level > 0 && now >= t->locked_until + throttle_max(a))
        memset(t, 0, sizeof(*t));           /* a clean period: forgiven */
    if (t->level == 0 && t->failures > 0 &&
        now - t->first_at >= a->throttle_window_ms)
        t->failures = 0;                    /* the window ran out */
    if (t->failures++ == 0)
        t->first_at = now;
    if (t->failures >= a->throttle_after && now >= t->locked_until) {
        t->level++;
        t->locked_until = now + throttle_lock(a, t->level);
        c->locked = 1;
    }
    t->updated_at = now;
    c->row = *t;
    return 0;
}

int auth_throttle_failure(struct auth *a, const struct auth_actor *who,
                          const char *name, struct error *err)
{
    if (a->throttle_after <= 0)
        return AUTH_OK;
    struct throttle_count c = { .a = a, .now = auth_now(a) };
    int64_t horizon = a->throttle_window_ms + 2 * throttle_max(a);
    if (store_throttle_update(a->st, throttle_key(name), throttle_count_one,
                              &c, c.now, c.now - horizon, err) < 0)
        return AUTH_ERROR;
    if (!c.locked)
        return AUTH_OK;
    char detail[128];
    snprintf(detail, sizeof(detail), "failures=%d seconds=%lld level=%d",
             c.row.failures, (long long)((c.row.locked_until - c.now) / 1000),
             c.row.level);
    log_warn("login of user name %s locked for %lld s after %d failures",
             throttle_key(name),
             (long long)((c.row.locked_until - c.now) / 1000), c.row.failures);
    return auth_audit(a, who, "login.throttle", throttle_key(name), detail,
                      err);
}

int auth_throttle_success(struct auth *a, const char *name, struct error *err)
{
    if (a->throttle_after <= 0)
        return AUTH_OK;
    return store_throttle_clear(a->st, throttle_key(name), err) < 0
               ? AUTH_ERROR : AUTH_OK;
}
