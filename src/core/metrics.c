/*
 * metrics.c - owns the process-wide counters of metrics.h: one row per
 * connector name (a sorted array under a mutex; a flow has tens of
 * connectors, not thousands).
 *
 * Must never: count a message's content, a person's name or a credential;
 * hold its mutex while calling anything but libc and the caller's fn.
 */
#include "core/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const double metrics_bucket_le[METRICS_BUCKETS] = {
    0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 86400,
};

struct metrics_entry {
    char *name;
    struct metrics_row row;
};

static struct {
    pthread_mutex_t mu;
    struct metrics_entry *e;
    size_t n, cap;
} metrics_g = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* The row of name (created, in order), or NULL when out of memory. */
static struct metrics_row *metrics_row_locked(const char *name)
{
    size_t lo = 0, hi = metrics_g.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(metrics_g.e[mid].name, name);
        if (c == 0)
            return &metrics_g.e[mid].row;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (metrics_g.n == metrics_g.cap) {
        size_t cap = metrics_g.cap ? 2 * metrics_g.cap : 16;
        void *p = realloc(metrics_g.e, cap * sizeof(*metrics_g.e));
        if (p == NULL)
            return NULL;
        metrics_g.e = p;
        metrics_g.cap = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return NULL;
    memmove(&metrics_g.e[lo + 1], &metrics_g.e[lo],
            (metrics_g.n - lo) * sizeof(*metrics_g.e));
    memset(&metrics_g.e[lo], 0, sizeof(*metrics_g.e));
    metrics_g.e[lo].name = copy;
    metrics_g.n++;
    for (size_t i = 0; i < metrics_g.n; i++)        /* names moved */
        metrics_g.e[i].row.connector = metrics_g.e[i].name;
    return &metrics_g.e[lo].row;
}

void metrics_received(const char *connector, int64_t bytes)
{
    if (connector == NULL)
        return;
    pthread_mutex_lock(&metrics_g.mu);
    struct metrics_row *r = metrics_row_locked(connector);
    if (r) {
        r->in_messages++;
        r->in_bytes += bytes;
    }
    pthread_mutex_unlock(&metrics_g.mu);
}

void metrics_delivery(const char *connector, enum metrics_outcome o,
                      int64_t bytes, int64_t latency_ms)
{
    if (connector == NULL)
        return;
    double secs = latency_ms > 0 ? (double)latency_ms / 1000.0 : 0.0;
    pthread_mutex_lock(&metrics_g.mu);
    struct metrics_row *r = metrics_row_locked(connector);
    if (r && o == METRICS_SENT) {
        r->out_messages++;
        r->out_bytes += bytes;
        r->latency_sum += secs;
        for (int i = 0; i < METRICS_BUCKETS; i++)
            r->buckets[i] += secs <= metrics_bucket_le[i];
        r->buckets[METRICS_BUCKETS]++;
    } else if (r && o == METRICS_RETRY) {
        r->retries++;
    } else if (r) {
        r->failures++;
    }
    pthread_mutex_unlock(&metrics_g.mu);
}

void metrics_each(void (*fn)(const struct metrics_row *r, void *arg),
                  void *arg)
{
    pthread_mutex_lock(&metrics_g.mu);
    for (size_t i = 0; i < metrics_g.n; i++)
        fn(&metrics_g.e[i].row, arg);
    pthread_mutex_unlock(&metrics_g.mu);
}

void metrics_reset(void)
{
    pthread_mutex_lock(&metrics_g.mu);
    for (size_t i = 0; i < metrics_g.n; i++)
        free(metrics_g.e[i].name);
    free(metrics_g.e);
    metrics_g.e = NULL;
    metrics_g.n = metrics_g.cap = 0;
    pthread_mutex_unlock(&metrics_g.mu);
}
