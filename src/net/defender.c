/*
 * defender.c - the ban table of defender.h: per address, the times of its
 * recent failures, the ban level and the end of the current ban.
 *
 * Owns an in-memory hash table (chained, DEFENDER_BUCKETS buckets) under
 * one mutex. The window slides: an address is banned at the ban_after-th
 * failure within ANY window_ms, because each entry keeps the times of its
 * last ban_after failures (a ring that grows on demand up to that size;
 * ban_after is at most DEFENDER_AFTER_MAX). A fixed window that restarted at the
 * first failure let 2 x (ban_after - 1) failures through within seconds
 * across a window's end, never banned.
 *
 * In a cluster each entry also holds the failures the other nodes
 * published for the address (remote, replaced at each reading: a count of
 * their own windows, so it ages with their publishing) and the count of
 * its own last handed out for publishing (published): a ban is decided on
 * failures + remote. The counts travel through the store at the net
 * server's 2 s sync rather than a write per failure: the request path
 * never waits for the database, the store sees at most one write per
 * changed address and node every 2 s, and the price is a lag of up to
 * two syncs (about 4 s) during which the nodes count apart.
 *
 * It must never call out (on_ban, the clock aside) while holding the
 * lock, never grow beyond DEFENDER_MAX_ENTRIES, and never shorten a
 * running ban. It does no I/O of its own: auditing, logging and persisting
 * a ban are the on_ban hook's job (server.c).
 */
#include "net/defender.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/id.h"

#define DEFENDER_BUCKETS 4096

struct def_entry {
    struct def_entry *next;
    char addr[DEFENDER_ADDR_MAX];
    int64_t *times;                 /* ring of recent failure times, oldest at head */
    int cap, head, failures;        /* ring size, oldest slot, failures in it */
    int remote;                     /* the other nodes' failures, as read */
    int published;                  /* failures as last handed out */
    unsigned remote_gen;            /* reading that set remote */
    int level;                      /* bans so far (0: never, or forgiven) */
    int64_t until_ms;               /* end of the last ban */
    int64_t touched_ms;
};

struct defender {
    struct defender_conf conf;
    struct defender_ops ops;
    pthread_mutex_t mu;
    struct def_entry *bucket[DEFENDER_BUCKETS];
    int count;
    unsigned remote_gen;            /* the reading of remote counts now */
};

void defender_conf_defaults(struct defender_conf *c)
{
    c->ban_after = 10;
    c->window_ms = 600000;
    c->ban_ms = 60000;
    c->max_ban_ms = 86400000;
}

static int64_t def_now(struct defender *d)
{
    return d->ops.now_ms ? d->ops.now_ms(d->ops.arg) : time_now_ms();
}

static unsigned def_hash(const char *s)
{
    uint32_t h = 2166136261u;               /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % DEFENDER_BUCKETS;
}

static bool def_conf_valid(const struct defender_conf *c)
{
    return c->ban_after >= 1 && c->ban_after <= DEFENDER_AFTER_MAX &&
           c->window_ms >= 1 && c->ban_ms >= 1 && c->max_ban_ms >= c->ban_ms;
}

struct defender *defender_new(const struct defender_conf *c,
                              const struct defender_ops *ops,
                              struct error *err)
{
    if (!def_conf_valid(c)) {
        error_set(err, "defender: invalid settings");
        return NULL;
    }
    struct defender *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    d->conf = *c;
    if (ops)
        d->ops = *ops;
    pthread_mutex_init(&d->mu, NULL);
    return d;
}

int defender_set_conf(struct defender *d, const struct defender_conf *c,
                      struct error *err)
{
    if (!def_conf_valid(c))
        return error_set(err, "defender: invalid settings");
    pthread_mutex_lock(&d->mu);
    d->conf = *c;
    pthread_mutex_unlock(&d->mu);
    return 0;
}

void defender_free(struct defender *d)
{
    if (d == NULL)
        return;
    for (int i = 0; i < DEFENDER_BUCKETS; i++) {
        for (struct def_entry *e = d->bucket[i], *n; e; e = n) {
            n = e->next;
            free(e->times);
            free(e);
        }
    }
    pthread_mutex_destroy(&d->mu);
    free(d);
}

/* Age e to now: failures older than the window are forgotten; a level is
 * forgiven max_ban_ms after the end of the last ban. */
static void def_refresh(const struct defender *d, struct def_entry *e,
                        int64_t now)
{
    while (e->failures > 0 && now - e->times[e->head] >= d->conf.window_ms) {
        e->head = (e->head + 1) % e->cap;
        e->failures--;
    }
    if (e->failures == 0)
        e->head = 0;
    if (e->level > 0 && now >= e->until_ms + d->conf.max_ban_ms)
        e->level = 0;
}

/* Remember one more failure at now (the ring holds the newest ones). */
static void def_push(const struct defender *d, struct def_entry *e,
                     int64_t now)
{
    int want = d->conf.ban_after;
    if (e->failures == e->cap && e->cap < want) {
        int cap = e->cap ? e->cap * 2 : 4;
        cap = cap < want ? cap : want;
        int64_t *t = malloc((size_t)cap * sizeof(*t));
        if (t != NULL) {
            for (int i = 0; i < e->failures; i++)
                t[i] = e->times[(e->head + i) % e->cap];
            free(e->times);
            e->times = t;
            e->cap = cap;
            e->head = 0;
        }
    }
    if (e->cap == 0)
        return;                     /* out of memory: this one is not counted */
    if (e->failures == e->cap) {    /* full: the oldest makes room */
        e->head = (e->head + 1) % e->cap;
        e->failures--;
    }
    e->times[(e->head + e->failures) % e->cap] = now;
    e->failures++;
}

static bool def_idle(const struct def_entry *e, int64_t now)
{
    return e->failures == 0 && e->remote == 0 && e->published == 0 &&
           e->level == 0 && e->until_ms <= now;
}

static struct def_entry *def_find(struct defender *d, const char *addr)
{
    for (struct def_entry *e = d->bucket[def_hash(addr)]; e; e = e->next)
        if (strcmp(e->addr, addr) == 0)
            return e;
    return NULL;
}

static void def_unlink(struct defender *d, struct def_entry *victim)
{
    struct def_entry **pp = &d->bucket[def_hash(victim->addr)];
    while (*pp && *pp != victim)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = victim->next;
        free(victim->times);
        free(victim);
        d->count--;
    }
}

/* Make room: drop every idle entry; if none was idle, the least recently
 * touched entry that is not banned. Returns false when all are banned. */
static bool def_make_room(struct defender *d, int64_t now)
{
    struct def_entry *oldest = NULL;
    int before = d->count;
    for (int i = 0; i < DEFENDER_BUCKETS; i++) {
        for (struct def_entry *e = d->bucket[i], *n; e; e = n) {
            n = e->next;
            def_refresh(d, e, now);
            if (def_idle(e, now))
                def_unlink(d, e);
            else if (e->until_ms <= now &&
                     (!oldest || e->touched_ms < oldest->touched_ms))
                oldest = e;
        }
    }
    if (d->count < before)
        return true;
    if (oldest == NULL)
        return false;
    def_unlink(d, oldest);
    return true;
}

static struct def_entry *def_get(struct defender *d, const char *addr,
                                 int64_t now)
{
    struct def_entry *e = def_find(d, addr);
    if (e)
        return e;
    if (strlen(addr) >= DEFENDER_ADDR_MAX)
        return NULL;
    if (d->count >= DEFENDER_MAX_ENTRIES && !def_make_room(d, now))
        return NULL;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->addr, sizeof(e->addr), "%s", addr);
    unsigned h = def_hash(addr);
    e->next = d->bucket[h];
    d->bucket[h] = e;
    d->count++;
    return e;
}

/* ban_ms * 2^(level-1), capped. */
static int64_t def_duration(const struct defender *d, int level)
{
    int64_t t = d->conf.ban_ms;
    for (int i = 1; i < level && t < d->conf.max_ban_ms; i++)
        t *= 2;
    return t < d->conf.max_ban_ms ? t : d->conf.max_ban_ms;
}

bool defender_check(struct defender *d, const char *address,
                    int64_t *retry_after_ms)
{
    int64_t now = def_now(d), left = 0;
    pthread_mutex_lock(&d->mu);
    struct def_entry *e = def_find(d, address);
    if (e && e->until_ms > now)
        left = e->until_ms - now;
    pthread_mutex_unlock(&d->mu);
    if (retry_after_ms)
        *retry_after_ms = left;
    return left > 0;
}

bool defender_failure(struct defender *d, const char *address)
{
    int64_t now = def_now(d);
    struct defender_ban ban = { .address = address };
    pthread_mutex_lock(&d->mu);
    struct def_entry *e = def_get(d, address, now);
    bool banned = false;
    if (e && e->until_ms <= now) {
        def_refresh(d, e, now);
        e->touched_ms = now;
        def_push(d, e, now);
        if (e->failures + e->remote >= d->conf.ban_after) {
            banned = true;
            ban.failures = e->failures + e->remote;
            ban.level = ++e->level;
            ban.duration_ms = def_duration(d, e->level);
            ban.until_ms = e->until_ms = now + ban.duration_ms;
            e->failures = e->remote = 0;
            e->head = 0;
        }
    }
    pthread_mutex_unlock(&d->mu);
    if (banned && d->ops.on_ban)
        d->ops.on_ban(d->ops.arg, &ban);
    return banned;
}

void defender_restore(struct defender *d, const char *address, int level,
                      int64_t until_ms)
{
    int64_t now = def_now(d);
    if (level < 0)
        level = 0;
    pthread_mutex_lock(&d->mu);
    struct def_entry *e = def_get(d, address, now);
    if (e) {
        if (level > e->level)
            e->level = level;
        if (until_ms > e->until_ms && until_ms > now) {
            e->failures = e->remote = 0;    /* consumed by that ban */
            e->head = 0;
        }
        if (until_ms > e->until_ms)
            e->until_ms = until_ms;
        e->touched_ms = now;
        def_refresh(d, e, now);
        if (def_idle(e, now))
            def_unlink(d, e);
    }
    pthread_mutex_unlock(&d->mu);
}

/* ---- counts of a cluster -------------------------------------------------------- */

static void def_count_of(const struct def_entry *e, struct defender_count *c)
{
    snprintf(c->address, sizeof(c->address), "%s", e->addr);
    c->failures = e->failures;
    c->first_ms = c->last_ms = 0;
    if (e->failures > 0) {
        c->first_ms = e->times[e->head];
        c->last_ms = e->times[(e->head + e->failures - 1) % e->cap];
    }
}

int defender_changed(struct defender *d, struct defender_count *out,
                     int max)
{
    int64_t now = def_now(d);
    int n = 0;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DEFENDER_BUCKETS && n < max; i++) {
        for (struct def_entry *e = d->bucket[i]; e && n < max; e = e->next) {
            def_refresh(d, e, now);
            if (e->failures == e->published)
                continue;
            def_count_of(e, &out[n++]);
            e->published = e->failures;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

void defender_remote_begin(struct defender *d)
{
    pthread_mutex_lock(&d->mu);
    d->remote_gen++;
    pthread_mutex_unlock(&d->mu);
}

void defender_remote(struct defender *d, const char *address, int failures)
{
    int64_t now = def_now(d);
    pthread_mutex_lock(&d->mu);
    /* a new entry only while there is room: making room scans the table,
     * which a reading of many addresses must not do once per address */
    struct def_entry *e = def_find(d, address);
    if (e == NULL && failures > 0 && d->count < DEFENDER_MAX_ENTRIES)
        e = def_get(d, address, now);
    if (e) {
        e->remote = failures > 0 ? failures : 0;
        e->remote_gen = d->remote_gen;
        e->touched_ms = now;
    }
    pthread_mutex_unlock(&d->mu);
}

void defender_remote_end(struct defender *d)
{
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DEFENDER_BUCKETS; i++)
        for (struct def_entry *e = d->bucket[i]; e; e = e->next)
            if (e->remote_gen != d->remote_gen)
                e->remote = 0;
    pthread_mutex_unlock(&d->mu);
}

int defender_banned_count(struct defender *d)
{
    int64_t now = def_now(d);
    int n = 0;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DEFENDER_BUCKETS; i++)
        for (struct def_entry *e = d->bucket[i]; e; e = e->next)
            n += e->until_ms > now;
    pthread_mutex_unlock(&d->mu);
    return n;
}
