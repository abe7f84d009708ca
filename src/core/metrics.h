/*
 * metrics.h - the exchange's counters for GET /metrics (R7: counted for the
 * operator only, served on the admin listener): per connector, messages
 * and bytes in (taken in by a source) and out (delivered), failed
 * attempts and parked failures, and a histogram of delivery latency (from
 * the message's intake to the hop's delivery). Process-wide, since the
 * process started (Prometheus counters: a restart resets them).
 *
 * Fed by core/intake.c (after a commit) and core/engine.c (after the
 * outcomes are committed); read by api/api_metrics.c. Thread-safe.
 */
#ifndef WHARF_METRICS_H
#define WHARF_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* The upper bounds (seconds) of the latency histogram's buckets, then
 * +Inf. */
#define METRICS_BUCKETS 10
extern const double metrics_bucket_le[METRICS_BUCKETS];

enum metrics_outcome { METRICS_SENT, METRICS_RETRY, METRICS_FAILED };

/* A message taken in by source connector (not a duplicate). */
void metrics_received(const char *connector, int64_t bytes);
/* An attempt of connector ended: delivered (with the message's bytes and
 * its latency since intake), failed and to be retried, or failed for good. */
void metrics_delivery(const char *connector, enum metrics_outcome o,
                      int64_t bytes, int64_t latency_ms);

/* One connector's counters, as metrics_each hands them out. */
struct metrics_row {
    const char *connector;
    int64_t in_messages, in_bytes;
    int64_t out_messages, out_bytes;
    int64_t retries, failures;
    int64_t buckets[METRICS_BUCKETS + 1];   /* cumulative counts, +Inf last */
    double latency_sum;                     /* seconds */
};

/* Call fn for every connector seen since start, in name order, under the
 * lock (fn must not call back into metrics). */
void metrics_each(void (*fn)(const struct metrics_row *r, void *arg),
                  void *arg);

/* Forget everything (tests). */
void metrics_reset(void);

#endif
