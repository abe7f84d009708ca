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

/* A job's data and input are sealed by the vault ("job:ID:data",
 * "job:ID:input"), or, for a kind whose type keeps them in the clear
 * (struct conn_job_type.in_clear: AS2's MDN jobs), stored as the tag
 * JOBS_CLEAR_TAG followed by the value. jobs_value_clear: 1 when a stored
 * value is such a one (key rotation leaves it as it is). */
#define JOBS_CLEAR_TAG "clear:"
#define JOBS_CLEAR_LEN 6
int jobs_value_clear(const unsigned char *blob, size_t len);

/* The store row of a job made ready (connectors/env.h:
 * conn_job_prepare), for the write that adds it with its own
 * (core/intake.c): row points into s. */
struct conn_job_ready;
struct store_job_new;
void conn_job_ready_row(const struct conn_job_ready *s,
                        struct store_job_new *row);

#endif
