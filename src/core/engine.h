/*
 * engine.h - the flow engine (M1, M2): sources polled, hops leased, run by
 * their connector, and committed; retries with backoff; reload of the flow
 * when it changes in the database.
 */
#ifndef WHARF_ENGINE_H
#define WHARF_ENGINE_H

#include <stdint.h>

#include "util/error.h"

struct wharf;
struct engine;

/* Start the poller, the workers and the reloader. Caller owns; stop with
 * engine_stop (waits for the threads to finish their current batch). */
struct engine *engine_start(struct wharf *w, struct error *err);
void engine_stop(struct engine *e);

/* The current flow generation (its one live instance of each connector),
 * with a reference the caller drops with flow_free. Never NULL while the
 * engine runs. Thread-safe. */
struct flow;
struct flow *engine_flow(struct engine *e);

/* Load the stored flow and make it current if its generation is not gen
 * (the caller read gen from the store; st: its connection). The engine's
 * poller does so within RELOAD_CHECK_MS by itself; a partner route does it
 * first so that a request after an import meets the new flow. 0, or -1
 * with err (the running generation stays). */
struct store;
int engine_reload(struct engine *e, struct store *st, int64_t gen,
                  struct error *err);

/* The data dir the engine runs (borrowed). */
struct wharf *engine_wharf(const struct engine *e);

/* `wharf serve`: for every connector type with route() and route_prefix,
 * route POST PREFIX... on the partner listener to the route() of the
 * connector the type's route_pick() chooses among the connectors of that
 * type in the engine's current flow generation (core/routes.c: the same
 * live instances the workers use). Call before net_server_start; free
 * after net_server_free and before engine_stop. NULL with err. */
struct net_server;
struct partner_routes;
struct partner_routes *partner_routes_register(struct net_server *s,
                                               struct engine *e,
                                               struct error *err);
void partner_routes_free(struct partner_routes *r);

/* Backoff before attempt `attempts + 1`, with jitter in [d/2, d] where
 * d = min(max_ms, initial_ms * 2^(attempts-1)). Exposed for tests. */
long long engine_backoff_ms(long long initial_ms, long long max_ms,
                            int attempts, unsigned rnd);

#endif
