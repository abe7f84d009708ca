/*
 * net_store.h - the rows the listeners keep across restarts: bans of the
 * defender (table `bans` of schema migration 2, see sqlite.c), and, on a
 * store shared by a cluster, each node's count of recent failures per
 * address (table `net_failures` of PostgreSQL migration 4), so a ban is
 * decided on the failures of every node (R22 on R21). Implemented in
 * sqlite_net.c (and pg_net.c).
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

/* One node's count of the failures of an address within the defender's
 * window, as it last published it (src/net/server.c, every 2 s). */
struct store_failures {
    const char *address;
    const char *node;       /* host/pid, as in the nodes table */
    int failures;           /* 0: the row goes */
    int64_t first_at;       /* oldest failure counted (the window's start) */
    int64_t last_at;        /* newest failure counted */
};

/* Publish f: insert or replace the row of (address, node), or delete it
 * when f->failures is 0. On SQLite (one node, nobody to tell) nothing. */
int store_failures_put(struct store *s, const struct store_failures *f,
                       struct error *err);

/* Per address, the sum of the failures published by every node but node
 * whose newest failure is at or after since, through cb (stop by returning
 * non-zero, which is returned). On SQLite no row. */
int store_failures_each(struct store *s, const char *node, int64_t since,
                        int (*cb)(const char *address, int failures,
                                  void *arg),
                        void *arg, struct error *err);

/* Delete the rows whose newest failure is before `before`: windows over,
 * also those of nodes that died without publishing their 0. On SQLite
 * nothing. */
int store_failures_prune(struct store *s, int64_t before, struct error *err);

#endif
