/*
 * pg_nodes.h - node_store.h on PostgreSQL (pg_nodes.c); included only by
 * sqlite_nodes.c, which hands each call over on a PostgreSQL store.
 */
#ifndef WHARF_PG_NODES_H
#define WHARF_PG_NODES_H

#include "store/node_store.h"

struct pg_store;

int pgs_node_beat(struct pg_store *p, const struct store_node *n,
                  struct error *err);
int pgs_node_stopped(struct pg_store *p, const char *id, int64_t at,
                     struct error *err);
int pgs_nodes(struct pg_store *p, struct store_node **out, size_t *n,
              struct error *err);
int pgs_lead(struct pg_store *p, int job, struct error *err);

#endif
