/*
 * net_store.h - the rows the listeners keep across restarts: bans of the
 * defender (table `bans` of schema migration 2, see sqlite.c). Implemented
 * in sqlite_net.c.
 *
 * Plain rows, no policy: src/net/defender.c decides who is banned and for
 * how long; these functions only remember it. Times are ms since the epoch.
 */
#ifndef WHARF_NET_STORE_H
#define WHARF_NET_STORE_H

#include <stdint.h>

#include "util/error.h"

struct store;

struct store_ban {
    const char *address;
    int failures;           /* failures that led to the last ban */
    int level;              /* bans so far */
    int64_t banned_until;
    int64_t updated_at;
};

/* Insert or replace the row of b->address. */
int store_ban_put(struct store *s, const struct store_ban *b,
                  struct error *err);

/* Every row with banned_until >= min_until, through cb (stop by returning
 * non-zero, which is returned). The row's strings live during the call. */
int store_ban_each(struct store *s, int64_t min_until,
                   int (*cb)(const struct store_ban *b, void *arg), void *arg,
                   struct error *err);

/* Delete rows with banned_until < before (nothing left to remember). */
int store_ban_prune(struct store *s, int64_t before, struct error *err);

#endif
