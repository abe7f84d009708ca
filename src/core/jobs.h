/*
 * jobs.h - the engine's side of durable jobs (connectors/env.h, "jobs"):
 * leasing due jobs, running each through its connector type's handler
 * with the connectors of the current flow generation, and committing what
 * became of it (and of its hop) in one transaction.
 */
#ifndef WHARF_JOBS_H
#define WHARF_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

struct flow;
struct store;

/* Lease up to max due jobs for owner (lease_ms), run them with f's
 * connectors and commit each outcome. seed: the caller's rand_r state for
 * the backoff's jitter. Returns how many ran; failures are logged. */
size_t jobs_run(const struct flow *f, struct store *st, const char *owner,
                int64_t lease_ms, size_t max, unsigned *seed);

#endif
