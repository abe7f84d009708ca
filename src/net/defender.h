/*
 * defender.h - automatic banning of abusive client addresses (R22, R19).
 *
 * Every authentication failure from an address is reported with
 * defender_failure(). `ban_after` failures within any `window_ms` (a
 * sliding window) ban the address for ban_ms; each further ban of the same address doubles the
 * time (capped at max_ban_ms, one day by default). A level is forgiven
 * (back to the first ban time) after the address stayed clean for
 * max_ban_ms after its last ban ended. Listeners ask defender_check()
 * before doing any work for a connection or a request.
 *
 * Thread-safe (one mutex). Memory is bounded: at most DEFENDER_MAX_ENTRIES
 * addresses are tracked, each with at most ban_after failure times; when full, expired entries are dropped first, then
 * the oldest entries that are not banned; a banned address is never
 * forgotten early.
 *
 * Side effects go through ops: the clock (tests inject one) and on_ban,
 * called once per ban, outside the lock, to audit, log and persist it.
 *
 * In a cluster (R21) every node has its own defender; what the other
 * nodes counted comes in through defender_remote_*: the decision is then
 * "this node's failures in the window + the others' as last read >=
 * ban_after", so an attacker spreading attempts over N nodes is banned
 * after about ban_after in all, not N x ban_after. This node's counts go
 * out through defender_changed. Both are called by the net server's sync
 * (every 2 s, on a shared store); without it remote counts stay 0.
 */
#ifndef WHARF_DEFENDER_H
#define WHARF_DEFENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

#define DEFENDER_MAX_ENTRIES 16384
#define DEFENDER_ADDR_MAX 64        /* bytes, with the NUL */
#define DEFENDER_AFTER_MAX 1000     /* ban_after at most: each address keeps
                                       the times of its last ban_after failures */

struct defender_conf {
    int ban_after;                  /* failures that trigger a ban (>= 1) */
    int64_t window_ms;              /* ... counted within this window */
    int64_t ban_ms;                 /* first ban */
    int64_t max_ban_ms;             /* cap of the doubling */
};

/* Defaults: 10 failures within 10 minutes, 60 s, doubling up to one day. */
void defender_conf_defaults(struct defender_conf *c);

struct defender_ban {
    const char *address;
    int failures;                   /* failures that led to it */
    int level;                      /* 1 for the first ban, 2 for the next... */
    int64_t until_ms;               /* end of the ban, clock of ops.now_ms */
    int64_t duration_ms;
};

struct defender_ops {
    int64_t (*now_ms)(void *arg);   /* NULL: time_now_ms() */
    void (*on_ban)(void *arg, const struct defender_ban *b);  /* may be NULL */
    void *arg;
};

struct defender;

/* Replace the settings (thresholds apply to failures from now on;
 * running bans keep their end). 0, or -1 with err when c is invalid
 * (nothing changed). */
int defender_set_conf(struct defender *d, const struct defender_conf *c,
                      struct error *err);

/* Caller owns; free with defender_free. ops may be NULL. */
struct defender *defender_new(const struct defender_conf *c,
                              const struct defender_ops *ops,
                              struct error *err);
void defender_free(struct defender *d);

/* True when address is banned now; *retry_after_ms (may be NULL) gets the
 * time left. */
bool defender_check(struct defender *d, const char *address,
                    int64_t *retry_after_ms);

/* Record one authentication failure. Returns true when this failure
 * banned the address (on_ban has been called). Failures of an address
 * already banned are ignored. */
bool defender_failure(struct defender *d, const char *address);

/* Put back a ban level remembered across restarts (from the bans table),
 * or apply a ban another node made: level and until_ms as last recorded.
 * A ban that ends later than the one known here consumes the failures
 * counted so far (as a ban made here does). */
void defender_restore(struct defender *d, const char *address, int level,
                      int64_t until_ms);

/* ---- counts of a cluster (see the top) ---- */

struct defender_count {
    char address[DEFENDER_ADDR_MAX];
    int failures;                   /* in the window now; 0: none left */
    int64_t first_ms, last_ms;      /* oldest and newest of them */
};

/* This node's counts that changed since they were last returned (aged
 * out of the window or consumed by a ban: failures 0), at most max into
 * out; the rest the next time. Returns how many. */
int defender_changed(struct defender *d, struct defender_count *out,
                     int max);

/* A reading of the other nodes' counts: defender_remote_begin, then
 * defender_remote for every address with a count, then
 * defender_remote_end, which sets every address not named to 0. */
void defender_remote_begin(struct defender *d);
void defender_remote(struct defender *d, const char *address, int failures);
void defender_remote_end(struct defender *d);

/* Addresses banned right now (for metrics and doctor). */
int defender_banned_count(struct defender *d);

#endif
