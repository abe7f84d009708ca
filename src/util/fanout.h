/*
 * fanout.h - run fn(ctx, 0) .. fn(ctx, n - 1) in the calling thread and
 * up to width - 1 helper threads at once, each taking the next index
 * until none is left; returns when all have ended, every index run
 * exactly once. What the engine uses to keep a connector's `concurrency`
 * deliveries (or jobs) of one batch in flight.
 *
 * The helpers are a pool that lives as long as the process (started when
 * first needed, at most FANOUT_MAX - 1, then idle until a call needs
 * them): what a thread keeps for itself (its curl handle with its
 * keep-alive connection and TLS session, its store connection) serves
 * every later batch, instead of a new TLS connection per helper per
 * batch. Thread-safe; calls from several threads share the pool. A
 * helper that cannot be started leaves its share to the caller.
 *
 * Helpers run at the priority of the thread that started them: only the
 * small-message lanes fan out (the large lane delivers one at a time).
 */
#ifndef WHARF_FANOUT_H
#define WHARF_FANOUT_H

#include <stddef.h>

/* At most this many threads on one call (the caller's included), and
 * helpers in all. */
#define FANOUT_MAX 64

void fanout_run(size_t n, size_t width, void (*fn)(void *ctx, size_t i),
                void *ctx);

/* How many helper threads the pool has started so far (tests). */
size_t fanout_helpers(void);

#endif
