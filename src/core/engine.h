/*
 * engine.h - the flow engine (M1, M2): sources polled, hops leased, run by
 * their connector, and committed; retries with backoff; reload of the flow
 * when it changes in the database.
 */
#ifndef WHARF_ENGINE_H
#define WHARF_ENGINE_H

#include "util/error.h"

struct wharf;
struct engine;

/* Start the poller, the workers and the reloader. Caller owns; stop with
 * engine_stop (waits for the threads to finish their current batch). */
struct engine *engine_start(struct wharf *w, struct error *err);
void engine_stop(struct engine *e);

/* `wharf serve`: for every connector type with route() and route_prefix,
 * route POST PREFIX... on the partner listener to the route() of the
 * connector the type's route_pick() chooses among the stored flow's
 * connectors of that type (core/routes.c). Call before net_server_start;
 * free after net_server_free. NULL with err on failure. */
struct net_server;
struct partner_routes;
struct partner_routes *partner_routes_register(struct net_server *s,
                                               struct wharf *w,
                                               struct error *err);
void partner_routes_free(struct partner_routes *r);

/* Backoff before attempt `attempts + 1`, with jitter in [d/2, d] where
 * d = min(max_ms, initial_ms * 2^(attempts-1)). Exposed for tests. */
long long engine_backoff_ms(long long initial_ms, long long max_ms,
                            int attempts, unsigned rnd);

#endif
