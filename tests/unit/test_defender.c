/*
 * test_defender.c - the defender (R22): ban after N failures within the
 * window, not before; the window slides (N within any window ban); a
 * window that ran out forgets; bans double on each
 * repeat up to the cap; bans expire; a level is forgiven after a clean
 * period; on_ban is called once per ban with what happened; restore after
 * a restart; memory stays bounded and banned addresses are never evicted.
 * The clock is injected.
 *
 * The bans a listener keeps across restarts (net_store.h) run against
 * SQLite and a real PostgreSQL (scripts/run-unit.sh starts one), where
 * several nodes share them (R21), and so do the failure counts the nodes
 * publish to one another: two defenders that exchange their counts ban an
 * address at ban_after failures in all, not ban_after each.
 */
#include "testutil.h"

#include "net/defender.h"
#include "store/net_store.h"
#include "store/store.h"

#define SEC 1000LL

struct clock_and_bans {
    int64_t now;
    int bans;
    struct {
        char address[DEFENDER_ADDR_MAX];
        int failures, level;
        int64_t until, duration;
    } last;
};

static int64_t fake_now(void *arg)
{
    return ((struct clock_and_bans *)arg)->now;
}

static void record_ban(void *arg, const struct defender_ban *b)
{
    struct clock_and_bans *t = arg;
    t->bans++;
    snprintf(t->last.address, sizeof(t->last.address), "%s", b->address);
    t->last.failures = b->failures;
    t->last.level = b->level;
    t->last.until = b->until_ms;
    t->last.duration = b->duration_ms;
}

static struct defender *make(struct clock_and_bans *t, int after)
{
    struct defender_conf c;
    defender_conf_defaults(&c);
    c.ban_after = after;
    c.window_ms = 600 * SEC;
    c.ban_ms = 60 * SEC;
    c.max_ban_ms = 86400 * SEC;
    struct defender_ops ops = { .now_ms = fake_now, .on_ban = record_ban,
                                .arg = t };
    struct error err = {0};
    struct defender *d = defender_new(&c, &ops, &err);
    assert_non_null(d);
    return d;
}

/* n failures from addr; returns how many of them banned it. */
static int fail_n(struct defender *d, const char *addr, int n)
{
    int banned = 0;
    for (int i = 0; i < n; i++)
        banned += defender_failure(d, addr);
    return banned;
}

static void test_defaults(void **state)
{
    (void)state;
    struct defender_conf c;
    defender_conf_defaults(&c);
    assert_int_equal(c.ban_after, 10);
    assert_int_equal(c.ban_ms, 60 * SEC);
    assert_int_equal(c.max_ban_ms, 86400 * SEC);
    struct defender_conf bad = c;
    bad.ban_after = 0;
    struct error err = {0};
    assert_null(defender_new(&bad, NULL, &err));
    assert_true(err.msg[0] != '\0');
    bad.ban_after = DEFENDER_AFTER_MAX + 1;
    assert_null(defender_new(&bad, NULL, &err));
}

static void test_ban_after_n_not_before(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 10);
    assert_int_equal(fail_n(d, "192.0.2.1", 9), 0);
    assert_false(defender_check(d, "192.0.2.1", NULL));
    assert_int_equal(t.bans, 0);
    assert_true(defender_failure(d, "192.0.2.1"));          /* the 10th */
    int64_t left = 0;
    assert_true(defender_check(d, "192.0.2.1", &left));
    assert_int_equal(left, 60 * SEC);
    assert_int_equal(t.bans, 1);
    assert_string_equal(t.last.address, "192.0.2.1");
    assert_int_equal(t.last.failures, 10);
    assert_int_equal(t.last.level, 1);
    assert_int_equal(t.last.duration, 60 * SEC);
    assert_int_equal(t.last.until, 1060 * SEC);
    /* another address is not affected */
    assert_false(defender_check(d, "192.0.2.2", NULL));
    /* failures while banned neither count nor extend the ban */
    assert_int_equal(fail_n(d, "192.0.2.1", 50), 0);
    assert_int_equal(t.bans, 1);
    assert_true(defender_check(d, "192.0.2.1", &left));
    assert_int_equal(left, 60 * SEC);
    assert_int_equal(defender_banned_count(d), 1);
    defender_free(d);
}

static void test_expiry(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 3);
    fail_n(d, "198.51.100.7", 3);
    t.now += 59 * SEC;
    assert_true(defender_check(d, "198.51.100.7", NULL));
    t.now += SEC;                                           /* 60 s later */
    assert_false(defender_check(d, "198.51.100.7", NULL));
    assert_int_equal(defender_banned_count(d), 0);
    /* after the ban, counting starts again from zero */
    assert_int_equal(fail_n(d, "198.51.100.7", 2), 0);
    assert_false(defender_check(d, "198.51.100.7", NULL));
    defender_free(d);
}

static void test_window(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 3);
    fail_n(d, "203.0.113.5", 2);
    t.now += 600 * SEC;                     /* the window ran out */
    assert_int_equal(fail_n(d, "203.0.113.5", 2), 0);
    assert_false(defender_check(d, "203.0.113.5", NULL));
    t.now += 599 * SEC;                     /* still inside the new window */
    assert_int_equal(fail_n(d, "203.0.113.5", 1), 1);
    assert_true(defender_check(d, "203.0.113.5", NULL));
    defender_free(d);
}

/* The window slides: ban_after failures within ANY window_ms ban. A window
 * fixed at the first failure let 9 failures at the end of one window and 9
 * at the start of the next (18 within seconds) through, never banned. */
static void test_r22_sliding_window_bans_at_threshold(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 10);
    assert_int_equal(fail_n(d, "192.0.2.60", 1), 0);        /* at 1000 s */
    t.now = 1599 * SEC;
    assert_int_equal(fail_n(d, "192.0.2.60", 8), 0);        /* 9 in the window */
    t.now = 1601 * SEC;                 /* the first one left the window */
    assert_int_equal(fail_n(d, "192.0.2.60", 1), 0);        /* 9 again */
    assert_true(defender_failure(d, "192.0.2.60"));         /* the 10th within 600 s */
    assert_int_equal(t.last.failures, 10);
    assert_int_equal(t.bans, 1);
    /* failures spread wider than the window never add up */
    t.now = 5000 * SEC;
    for (int i = 0; i < 30; i++) {
        assert_false(defender_failure(d, "192.0.2.61"));
        t.now += 67 * SEC;              /* 9 per 603 s */
    }
    assert_false(defender_check(d, "192.0.2.61", NULL));
    /* exactly at the edge: a failure window_ms old no longer counts */
    struct defender *e = make(&t, 2);
    t.now = 9000 * SEC;
    assert_false(defender_failure(e, "192.0.2.62"));
    t.now += 600 * SEC;
    assert_false(defender_failure(e, "192.0.2.62"));
    t.now += 599 * SEC;
    assert_true(defender_failure(e, "192.0.2.62"));
    defender_free(e);
    defender_free(d);
}

static void test_doubling_and_cap(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 2);
    int64_t expect = 60 * SEC;
    for (int level = 1; level <= 14; level++) {
        assert_int_equal(fail_n(d, "192.0.2.9", 2), 1);
        assert_int_equal(t.last.level, level);
        assert_int_equal(t.last.duration, expect);
        int64_t left;
        assert_true(defender_check(d, "192.0.2.9", &left));
        assert_int_equal(left, expect);
        t.now += expect;                    /* wait the ban out */
        assert_false(defender_check(d, "192.0.2.9", NULL));
        expect = expect * 2 > 86400 * SEC ? 86400 * SEC : expect * 2;
    }
    assert_int_equal(t.last.duration, 86400 * SEC);   /* capped at a day */
    assert_int_equal(t.bans, 14);
    defender_free(d);
}

static void test_forgiven_after_a_clean_day(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 2);
    fail_n(d, "192.0.2.3", 2);
    t.now += 60 * SEC;
    fail_n(d, "192.0.2.3", 2);
    assert_int_equal(t.last.duration, 120 * SEC);
    t.now += 120 * SEC + 86400 * SEC;       /* a clean day after the ban */
    fail_n(d, "192.0.2.3", 2);
    assert_int_equal(t.last.level, 1);
    assert_int_equal(t.last.duration, 60 * SEC);
    defender_free(d);
}

static void test_restore(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 2);
    /* a running ban of level 3 from before a restart */
    defender_restore(d, "192.0.2.4", 3, 1030 * SEC);
    int64_t left;
    assert_true(defender_check(d, "192.0.2.4", &left));
    assert_int_equal(left, 30 * SEC);
    t.now = 1030 * SEC;
    assert_false(defender_check(d, "192.0.2.4", NULL));
    fail_n(d, "192.0.2.4", 2);              /* the next ban is level 4 */
    assert_int_equal(t.last.level, 4);
    assert_int_equal(t.last.duration, 480 * SEC);
    /* a row whose ban ended more than a day ago restores nothing */
    t.now = 100000 * SEC;
    defender_restore(d, "192.0.2.5", 5, 10 * SEC);
    fail_n(d, "192.0.2.5", 2);
    assert_int_equal(t.last.level, 1);
    defender_free(d);
}

static void test_bounded_and_bans_kept(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 2);
    fail_n(d, "10.255.255.1", 2);           /* banned first */
    char addr[64];
    for (int i = 0; i < DEFENDER_MAX_ENTRIES + 5000; i++) {
        snprintf(addr, sizeof(addr), "10.%d.%d.%d", (i >> 16) & 255,
                 (i >> 8) & 255, i & 255);
        defender_failure(d, addr);          /* one failure each */
    }
    assert_true(defender_check(d, "10.255.255.1", NULL));
    /* a new address is still tracked and can be banned */
    assert_int_equal(fail_n(d, "192.0.2.77", 2), 1);
    assert_true(defender_check(d, "192.0.2.77", NULL));
    assert_int_equal(defender_banned_count(d), 2);
    defender_free(d);
}

static void test_long_address_ignored(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 1);
    char longaddr[DEFENDER_ADDR_MAX + 10];
    memset(longaddr, 'a', sizeof(longaddr) - 1);
    longaddr[sizeof(longaddr) - 1] = '\0';
    assert_false(defender_failure(d, longaddr));
    assert_false(defender_check(d, longaddr, NULL));
    defender_free(d);
}

/* A reload (SIGHUP) changes the thresholds: they apply to the failures
 * that follow; a running ban keeps its end; invalid settings change
 * nothing. */
static void test_r22_set_conf_applies_at_run_time(void **state)
{
    (void)state;
    struct clock_and_bans t = { .now = 1000 * SEC };
    struct defender *d = make(&t, 10);
    assert_int_equal(fail_n(d, "10.0.0.1", 4), 0);
    assert_int_equal(fail_n(d, "10.0.0.9", 10), 1);
    int64_t until = t.last.until;
    struct defender_conf c;
    defender_conf_defaults(&c);
    c.ban_after = 5;
    c.window_ms = 600 * SEC;
    c.ban_ms = 300 * SEC;
    struct error err = {0};
    assert_int_equal(defender_set_conf(d, &c, &err), 0);
    assert_int_equal(fail_n(d, "10.0.0.1", 1), 1);   /* 5th failure bans */
    assert_int_equal(t.last.duration, 300 * SEC);
    t.now = until - 1;
    assert_true(defender_check(d, "10.0.0.9", NULL));
    t.now = until;
    assert_false(defender_check(d, "10.0.0.9", NULL));
    struct defender_conf bad = c;
    bad.ban_after = 0;
    assert_int_equal(defender_set_conf(d, &bad, &err), -1);
    assert_int_equal(fail_n(d, "10.0.0.2", 4), 0);
    assert_int_equal(fail_n(d, "10.0.0.2", 1), 1);
    defender_free(d);
}

/* ---- counts of a cluster (R21) ------------------------------------------------ */

/* Hand d's changed counts to other, as the net server's sync does
 * through the store (one other node). */
static void exchange(struct defender *d, struct defender *other)
{
    struct defender_count c[16];
    int n = defender_changed(d, c, 16);
    defender_remote_begin(other);
    for (int i = 0; i < n; i++)
        defender_remote(other, c[i].address, c[i].failures);
    defender_remote_end(other);
}

static void test_r21_two_nodes_ban_at_the_threshold_in_all(void **state)
{
    (void)state;
    struct clock_and_bans t1 = { .now = 1000 * SEC }, t2 = t1;
    struct defender *d1 = make(&t1, 6), *d2 = make(&t2, 6);
    const char *addr = "198.51.100.20";
    assert_int_equal(fail_n(d1, addr, 3), 0);
    struct defender_count c[4];
    assert_int_equal(defender_changed(d1, c, 4), 1);
    assert_string_equal(c[0].address, addr);
    assert_int_equal(c[0].failures, 3);
    assert_int_equal(c[0].first_ms, 1000 * SEC);
    assert_int_equal(c[0].last_ms, 1000 * SEC);
    assert_int_equal(defender_changed(d1, c, 4), 0);    /* nothing new */
    fail_n(d1, addr, 1);
    exchange(d1, d2);                                   /* 4 on node 1 */
    assert_int_equal(fail_n(d2, addr, 1), 0);           /* 5 in all */
    assert_int_equal(fail_n(d2, addr, 1), 1);           /* 6: banned */
    assert_int_equal(t2.last.failures, 6);
    assert_true(defender_check(d2, addr, NULL));
    /* node 1 applies node 2's ban (the bans table): its own 4 failures
     * are consumed by it and published as 0 */
    defender_restore(d1, addr, t2.last.level, t2.last.until);
    assert_true(defender_check(d1, addr, NULL));
    assert_int_equal(defender_changed(d1, c, 4), 1);
    assert_int_equal(c[0].failures, 0);
    /* after the ban, counting starts again from nothing on both */
    t1.now = t2.now = 1100 * SEC;
    exchange(d1, d2);
    assert_int_equal(fail_n(d2, addr, 5), 0);
    assert_int_equal(fail_n(d2, addr, 1), 1);
    defender_free(d1);
    defender_free(d2);
}

static void test_r21_remote_counts_are_replaced_and_age(void **state)
{
    (void)state;
    struct clock_and_bans t1 = { .now = 1000 * SEC }, t2 = t1;
    struct defender *d1 = make(&t1, 4), *d2 = make(&t2, 4);
    const char *addr = "2001:db8::20";
    fail_n(d1, addr, 3);
    exchange(d1, d2);
    /* node 1's failures leave its window: it publishes 0, and a reading
     * that no longer names the address sets it to 0 */
    t1.now = t2.now = 1000 * SEC + 600 * SEC;
    struct defender_count c[4];
    assert_int_equal(defender_changed(d1, c, 4), 1);
    assert_int_equal(c[0].failures, 0);
    defender_remote_begin(d2);
    defender_remote_end(d2);
    assert_int_equal(fail_n(d2, addr, 3), 0);           /* not 6 in all */
    assert_int_equal(fail_n(d2, addr, 1), 1);
    defender_free(d1);
    defender_free(d2);
}

/* ---- the bans in the store (net_store.h), on both backends ---------------------- */

struct sfx {
    char dir[256];
    char db[300];               /* a file, or a postgresql:// URL */
    char pgname[64];            /* the PostgreSQL database, "" on SQLite */
    struct store *st;
};

/* The store group running: 0 SQLite, 1 PostgreSQL. */
static int g_pg;

static int sfx_setup(void **state)
{
    struct sfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/wharf.db", f->dir);
    if (g_pg)
        test_pg_fresh(f->db, sizeof(f->db), f->pgname);
    struct error err = {0};
    if ((f->st = store_open(f->db, &err)) == NULL)
        fail_msg("store_open: %s", err.msg);
    *state = f;
    return 0;
}

static int sfx_teardown(void **state)
{
    struct sfx *f = *state;
    store_close(f->st);
    if (f->pgname[0])
        test_pg_drop(f->pgname);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

#define MUST(call, e) do { if ((call) != 0) fail_msg("%s: %s", #call, \
                                                     (e).msg); } while (0)

struct seen {
    int n, stop_at;
    char addr[8][64];
    int failures[8], level[8];
    int64_t until[8], updated[8];
};

static int see_ban(const struct store_ban *b, void *arg)
{
    struct seen *s = arg;
    if (s->n < 8) {
        snprintf(s->addr[s->n], sizeof(s->addr[0]), "%s", b->address);
        s->failures[s->n] = b->failures;
        s->level[s->n] = b->level;
        s->until[s->n] = b->banned_until;
        s->updated[s->n] = b->updated_at;
    }
    s->n++;
    return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static void ban_put(struct store *st, const char *addr, int failures,
                    int level, int64_t until)
{
    struct error err = {0};
    struct store_ban b = { addr, failures, level, until, until - 60 * SEC };
    MUST(store_ban_put(st, &b, &err), err);
}

/* Rows kept as written, replaced by address, read from min_until on in
 * address order, a callback's non-zero stops and is returned, prune
 * deletes the ended ones. */
static void test_r22_bans_kept_in_the_store(void **state)
{
    struct sfx *f = *state;
    struct error err = {0};
    ban_put(f->st, "198.51.100.7", 5, 1, 2000 * SEC);
    ban_put(f->st, "2001:db8::1", 5, 2, 3000 * SEC);
    ban_put(f->st, "192.0.2.4", 6, 3, 1000 * SEC);
    ban_put(f->st, "198.51.100.7", 7, 2, 4000 * SEC);      /* replaced */
    struct seen s = {0};
    MUST(store_ban_each(f->st, 1500 * SEC, see_ban, &s, &err), err);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.addr[0], "198.51.100.7");
    assert_int_equal(s.failures[0], 7);
    assert_int_equal(s.level[0], 2);
    assert_int_equal(s.until[0], 4000 * SEC);
    assert_int_equal(s.updated[0], 3940 * SEC);
    assert_string_equal(s.addr[1], "2001:db8::1");
    memset(&s, 0, sizeof(s));
    s.stop_at = 2;
    assert_int_equal(store_ban_each(f->st, 0, see_ban, &s, &err), 7);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.addr[0], "192.0.2.4");
    MUST(store_ban_prune(f->st, 2500 * SEC, &err), err);
    memset(&s, 0, sizeof(s));
    MUST(store_ban_each(f->st, 0, see_ban, &s, &err), err);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.addr[0], "198.51.100.7");
    assert_string_equal(s.addr[1], "2001:db8::1");
}

static int restore_into(const struct store_ban *b, void *arg)
{
    defender_restore(arg, b->address, b->level, b->banned_until);
    return 0;
}

/* A ban one node records is enforced by a node that starts after it (it
 * restores the shared rows, as net_load_bans does). */
static void test_r21_ban_of_one_node_restored_by_another(void **state)
{
    struct sfx *f = *state;
    struct error err = {0};
    struct clock_and_bans t1 = { .now = 1000 * SEC };
    struct defender *d1 = make(&t1, 2);
    assert_int_equal(fail_n(d1, "203.0.113.9", 2), 1);
    ban_put(f->st, t1.last.address, t1.last.failures, t1.last.level,
            t1.last.until);
    defender_free(d1);
    struct store *node2 = store_open(f->db, &err);
    if (node2 == NULL)
        fail_msg("node 2: %s", err.msg);
    struct clock_and_bans t2 = { .now = 1010 * SEC };
    struct defender *d2 = make(&t2, 2);
    MUST(store_ban_each(node2, t2.now - 86400 * SEC, restore_into, d2, &err),
         err);
    int64_t left = 0;
    assert_true(defender_check(d2, "203.0.113.9", &left));
    assert_int_equal(left, 50 * SEC);
    assert_false(defender_check(d2, "203.0.113.10", NULL));
    /* its next ban there continues the level */
    t2.now = 1060 * SEC;
    assert_int_equal(fail_n(d2, "203.0.113.9", 2), 1);
    assert_int_equal(t2.last.level, 2);
    defender_free(d2);
    store_close(node2);
}

struct sums {
    int n;
    char addr[8][64];
    int failures[8];
};

static int see_sum(const char *address, int failures, void *arg)
{
    struct sums *s = arg;
    if (s->n < 8) {
        snprintf(s->addr[s->n], sizeof(s->addr[0]), "%s", address);
        s->failures[s->n] = failures;
    }
    s->n++;
    return 0;
}

static void fail_put(struct store *st, const char *addr, const char *node,
                     int failures, int64_t last)
{
    struct error err = {0};
    struct store_failures f = { addr, node, failures, last - 10 * SEC,
                                last };
    MUST(store_failures_put(st, &f, &err), err);
}

/* Each node's row per address, replaced by its next count, deleted by a
 * 0; a node reads the sums of the OTHER nodes' rows whose newest failure
 * is in the window; prune deletes old windows. On SQLite (one node)
 * nothing is kept and nothing read. */
static void test_r21_failure_counts_shared_in_the_store(void **state)
{
    struct sfx *f = *state;
    struct error err = {0};
    fail_put(f->st, "198.51.100.7", "h/1", 3, 2000 * SEC);
    fail_put(f->st, "198.51.100.7", "h/2", 1, 2000 * SEC);
    fail_put(f->st, "198.51.100.7", "h/2", 2, 2001 * SEC);   /* replaced */
    fail_put(f->st, "2001:db8::1", "h/2", 4, 1000 * SEC);    /* old */
    fail_put(f->st, "192.0.2.4", "h/1", 5, 2000 * SEC);
    fail_put(f->st, "192.0.2.4", "h/1", 0, 2000 * SEC);      /* deleted */
    struct sums s = {0};
    MUST(store_failures_each(f->st, "h/1", 1500 * SEC, see_sum, &s, &err),
         err);
    if (!g_pg) {
        assert_int_equal(s.n, 0);
        MUST(store_failures_prune(f->st, 1500 * SEC, &err), err);
        return;
    }
    assert_int_equal(s.n, 1);                   /* h/1's own rows left out */
    assert_string_equal(s.addr[0], "198.51.100.7");
    assert_int_equal(s.failures[0], 2);
    memset(&s, 0, sizeof(s));
    MUST(store_failures_each(f->st, "h/3", 0, see_sum, &s, &err), err);
    assert_int_equal(s.n, 2);                   /* by address */
    assert_string_equal(s.addr[0], "198.51.100.7");
    assert_int_equal(s.failures[0], 5);
    assert_string_equal(s.addr[1], "2001:db8::1");
    assert_int_equal(s.failures[1], 4);
    MUST(store_failures_prune(f->st, 1500 * SEC, &err), err);
    memset(&s, 0, sizeof(s));
    MUST(store_failures_each(f->st, "h/3", 0, see_sum, &s, &err), err);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.addr[0], "198.51.100.7");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ban_after_n_not_before),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_r22_sliding_window_bans_at_threshold),
        cmocka_unit_test(test_doubling_and_cap),
        cmocka_unit_test(test_forgiven_after_a_clean_day),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_bounded_and_bans_kept),
        cmocka_unit_test(test_long_address_ignored),
        cmocka_unit_test(test_r22_set_conf_applies_at_run_time),
        cmocka_unit_test(test_r21_two_nodes_ban_at_the_threshold_in_all),
        cmocka_unit_test(test_r21_remote_counts_are_replaced_and_age),
    };
#define T(fn) cmocka_unit_test_setup_teardown(fn, sfx_setup, sfx_teardown)
    const struct CMUnitTest store[] = {
        T(test_r22_bans_kept_in_the_store),
        T(test_r21_ban_of_one_node_restored_by_another),
        T(test_r21_failure_counts_shared_in_the_store),
    };
#undef T
    int failed = cmocka_run_group_tests_name("defender", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("defender bans (sqlite)", store,
                                          NULL, NULL);
    g_pg = 1;
    failed += cmocka_run_group_tests_name("defender bans (postgresql)", store,
                                          NULL, NULL);
    return failed;
}
