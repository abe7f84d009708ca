/*
 * pg_net.h - the PostgreSQL twins of net_store.h (pg_net.c): the defender's
 * bans and the failure counts of the nodes. Included only by sqlite_net.c (which hands each call over on a
 * PostgreSQL store) and pg_net.c. Behaviour: as net_store.h says for the
 * store_ function of the same name.
 */
#ifndef WHARF_PG_NET_H
#define WHARF_PG_NET_H

#include "store/net_store.h"

struct pg_store;

int pgs_ban_put(struct pg_store *p, const struct store_ban *b,
                struct error *err);
int pgs_ban_each(struct pg_store *p, int64_t min_until,
                 int (*cb)(const struct store_ban *b, void *arg), void *arg,
                 struct error *err);
int pgs_ban_prune(struct pg_store *p, int64_t before, struct error *err);
int pgs_failures_put(struct pg_store *p, const struct store_failures *f,
                     struct error *err);
int pgs_failures_each(struct pg_store *p, const char *node, int64_t since,
                      int (*cb)(const char *address, int failures, void *arg),
                      void *arg, struct error *err);
int pgs_failures_prune(struct pg_store *p, int64_t before, struct error *err);

#endif
