/*
 * node_store.h - the nodes that serve this database (R21): each running
 * `wharf serve` records itself and beats every few seconds, so `wharf
 * cluster status` can list every node of a cluster (on PostgreSQL) or the
 * one node (on SQLite) with the leases it holds. Table `nodes` (SQLite
 * migration 12, PostgreSQL migration 3). Implemented in sqlite_nodes.c and
 * pg_nodes.c.
 *
 * Plain rows, no policy: a node is "alive" to the reader when its last beat
 * is within three of its beat intervals. Times are ms since the epoch.
 */
#ifndef WHARF_NODE_STORE_H
#define WHARF_NODE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;

struct store_node {
    char *id;               /* host/pid: the prefix of its lease owners */
    char *address;          /* its listeners, "admin IP:PORT, partner ..." */
    char *version;
    int64_t started_at;
    int64_t seen_at;        /* last beat */
    int64_t beat_ms;        /* how often it beats */
    int64_t stopped_at;     /* 0 while it runs (or died without saying) */
    int64_t leases;         /* hops and jobs it holds now (list only) */
};

/* Insert or refresh node n (its started_at is kept from the first beat);
 * rows not seen for a week go. 0 or -1. */
int store_node_beat(struct store *s, const struct store_node *n,
                    struct error *err);
/* A clean stop: stopped_at = at. */
int store_node_stopped(struct store *s, const char *id, int64_t at,
                       struct error *err);
/* Every node, newest start first (at most 200). *out malloc'ed; free with
 * store_nodes_free. */
int store_nodes(struct store *s, struct store_node **out, size_t *n,
                struct error *err);
void store_nodes_free(struct store_node *nodes, size_t n);

/* Cluster-wide work that one node at a time must do: 1 when this
 * connection leads job, 0 when another node's does, -1 with err. On
 * PostgreSQL a session advisory lock per job (class "Whrn", the job's
 * number), kept while the connection lives: when the leading node dies or
 * loses its connection, the next node that asks leads. Leadership belongs
 * to the connection s, so the thread that asks must do the work on that
 * same s. On SQLite (one node) always 1. The jobs (docs/architecture.md,
 * "Cluster-wide jobs"):
 *   PURGE   the retention purge (security/upkeep.c);
 *   DETECT  the alert rules over shared rows: stored certificates' expiry,
 *           the periodic audit verify, resolving their alerts
 *           (security/detectors.c, run by security.c's detector thread);
 *   NOTIFY  sending the timeline (the outbox) by e-mail, webhook and
 *           syslog: the channels' cursors are shared settings, so two
 *           senders would send an entry twice (security/notify.c, run by
 *           security.c's notifier thread).
 * The numbers are the lock keys: never renumber. */
enum store_lead_job {
    STORE_LEAD_PURGE = 1,
    STORE_LEAD_DETECT = 2,
    STORE_LEAD_NOTIFY = 3,
};
int store_lead(struct store *s, enum store_lead_job job, struct error *err);

#endif
