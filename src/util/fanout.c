/*
 * fanout.c - a pool of helper threads sharing out the indexes of calls
 * (fanout.h).
 *
 * A call that wants helpers is queued (a stack frame of fanout_run: it
 * lives until the call returns); an idle helper joins the first queued
 * call that wants more, takes indexes until none is left, and leaves it.
 * The caller takes indexes too, then unqueues its call (no helper joins
 * it after that) and waits until every helper that joined has left: only
 * then may its ctx go. Helpers are started when the idle ones are fewer
 * than the queued calls want, and never end (the pool is the process's).
 *
 * Owns the pool (static); nothing of a call beyond the call.
 */
#include "util/fanout.h"

#include <pthread.h>

struct call {
    void (*fn)(void *ctx, size_t i);
    void *ctx;
    size_t n;
    size_t next;                /* taken atomically */
    size_t want;                /* helpers it may have */
    size_t joined;              /* helpers that joined it */
    size_t active;              /* of those, still taking indexes */
    struct call *qnext;         /* the queue of calls that want helpers */
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_left = PTHREAD_COND_INITIALIZER;
static struct call *pool_queue;
static size_t pool_threads, pool_idle;
static size_t pool_starting;       /* started, not yet under pool_mu */

static void call_take(struct call *c)
{
    size_t i;
    while ((i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->n)
        c->fn(c->ctx, i);
}

static void queue_remove(struct call *c)
{
    for (struct call **p = &pool_queue; *p != NULL; p = &(*p)->qnext)
        if (*p == c) {
            *p = c->qnext;
            return;
        }
}

/* Under pool_mu: the first queued call that wants another helper. */
static struct call *queue_first(void)
{
    for (struct call *c = pool_queue; c != NULL; c = c->qnext)
        if (c->joined < c->want &&
            __atomic_load_n(&c->next, __ATOMIC_RELAXED) < c->n)
            return c;
    return NULL;
}

static void *helper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool_mu);
    pool_starting--;
    for (;;) {
        struct call *c = queue_first();
        if (c == NULL) {
            pool_idle++;
            pthread_cond_wait(&pool_work, &pool_mu);
            pool_idle--;
            continue;
        }
        c->joined++;
        c->active++;
        pthread_mutex_unlock(&pool_mu);
        call_take(c);
        pthread_mutex_lock(&pool_mu);
        if (--c->active == 0)
            pthread_cond_broadcast(&pool_left);
    }
    return NULL;
}

/* Under pool_mu: start helpers while the idle ones (and those starting,
 * which will look for a call first thing) are fewer than the queued calls
 * want. */
static void pool_grow(void)
{
    size_t wanted = 0;
    for (struct call *c = pool_queue; c != NULL; c = c->qnext)
        wanted += c->want - c->joined;
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0)
        return;
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    for (size_t have = pool_idle + pool_starting; have < wanted &&
         pool_threads < FANOUT_MAX - 1; have++) {
        pthread_t t;
        if (pthread_create(&t, &a, helper_main, NULL) != 0)
            break;
        pool_threads++;
        pool_starting++;
    }
    pthread_attr_destroy(&a);
}

void fanout_run(size_t n, size_t width, void (*fn)(void *ctx, size_t i),
                void *ctx)
{
    struct call c = { .fn = fn, .ctx = ctx, .n = n };
    c.want = width > 1 ? width - 1 : 0;
    if (n == 0)
        return;
    if (c.want > n - 1)
        c.want = n - 1;
    if (c.want > FANOUT_MAX - 1)
        c.want = FANOUT_MAX - 1;
    if (c.want > 0) {
        pthread_mutex_lock(&pool_mu);
        struct call **tail = &pool_queue;
        while (*tail != NULL)
            tail = &(*tail)->qnext;
        *tail = &c;             /* first come, first helped */
        pool_grow();
        pthread_cond_broadcast(&pool_work);
        pthread_mutex_unlock(&pool_mu);
    }
    call_take(&c);
    if (c.want == 0)
        return;
    pthread_mutex_lock(&pool_mu);
    queue_remove(&c);
    while (c.active > 0)
        pthread_cond_wait(&pool_left, &pool_mu);
    pthread_mutex_unlock(&pool_mu);
}

size_t fanout_helpers(void)
{
    pthread_mutex_lock(&pool_mu);
    size_t n = pool_threads;
    pthread_mutex_unlock(&pool_mu);
    return n;
}
