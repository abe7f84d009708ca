/*
 * syncgroup.c - owns the process's sync groups (syncgroup.h): a table of
 * groups by device and inode, and the round of each group.
 *
 * A group counts tickets. A caller takes the next ticket; the leader of a
 * round syncs once for every ticket taken before its sync began (target)
 * and then sets synced = target. A caller returns when synced reaches its
 * ticket, leading a round itself whenever none is running. failed holds
 * the errno of the first failed sync; from then on a ticket above synced
 * fails without syncing.
 *
 * Must never: let a caller return 0 before a sync that began after its
 * ticket succeeded; run a sync while holding the group's mutex (callers
 * that come meanwhile must be able to queue for the next round).
 */
#include "util/syncgroup.h"
#include "util/id.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sync_group {
    struct sync_group *next;        /* in the table's bucket */
    dev_t dev;
    ino_t ino;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t turn;           /* the writer turn */
    uint64_t taken;                 /* tickets handed out */
    uint64_t synced;                /* every ticket <= this is durable */
    int busy;                       /* a round is running */
    int failed;                     /* errno of the first failed sync */
};

#define SG_BUCKETS 256

static struct {
    pthread_mutex_t mu;
    struct sync_group *bucket[SG_BUCKETS];
} sg_table = { .mu = PTHREAD_MUTEX_INITIALIZER };

static size_t sg_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;
    return (size_t)(h >> 56) % SG_BUCKETS;
}

struct sync_group *sync_group_of(dev_t dev, ino_t ino)
{
    size_t b = sg_hash(dev, ino);
    pthread_mutex_lock(&sg_table.mu);
    struct sync_group *g = sg_table.bucket[b];
    while (g && (g->dev != dev || g->ino != ino))
        g = g->next;
    if (g == NULL && (g = calloc(1, sizeof(*g))) != NULL) {
        g->dev = dev;
        g->ino = ino;
        pthread_mutex_init(&g->mu, NULL);
        pthread_cond_init(&g->cv, NULL);
        pthread_mutexattr_t a;          /* a thread asking twice: EDEADLK */
        pthread_mutexattr_init(&a);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
        pthread_mutex_init(&g->turn, &a);
        pthread_mutexattr_destroy(&a);
        g->next = sg_table.bucket[b];
        sg_table.bucket[b] = g;
    }
    pthread_mutex_unlock(&sg_table.mu);
    return g;
}

/* Lead one round (called and returns with g->mu held). */
static void sg_lead(struct sync_group *g, int (*sync)(void *), void *arg)
{
    uint64_t target = g->taken;
    g->busy = 1;
    pthread_mutex_unlock(&g->mu);
    int e = sync(arg);
    pthread_mutex_lock(&g->mu);
    g->busy = 0;
    if (e != 0 && g->failed == 0)
        g->failed = e;
    if (e == 0 && g->failed == 0)
        g->synced = target;
    pthread_cond_broadcast(&g->cv);
}

int sync_group_wait(struct sync_group *g, int (*sync)(void *arg), void *arg,
                    const char *what, struct error *err)
{
    pthread_mutex_lock(&g->mu);
    uint64_t ticket = ++g->taken;
    while (g->synced < ticket && g->failed == 0) {
        if (g->busy)
            pthread_cond_wait(&g->cv, &g->mu);
        else
            sg_lead(g, sync, arg);
    }
    int ok = g->synced >= ticket;
    int e = g->failed;
    pthread_mutex_unlock(&g->mu);
    if (ok)
        return 0;
    return error_errno(err, e, "cannot sync %s (a sync of it failed: "
                       "nothing written since is known to be durable; "
                       "restart after checking the disk)", what);
}

unsigned long long sync_group_tickets(struct sync_group *g)
{
    pthread_mutex_lock(&g->mu);
    unsigned long long n = g->taken;
    pthread_mutex_unlock(&g->mu);
    return n;
}

int sync_group_turn(struct sync_group *g, int timeout_ms, const char *what,
                    struct error *err)
{
    struct timespec until = time_deadline(timeout_ms);
    int e = pthread_mutex_timedlock(&g->turn, &until);
    if (e == 0)
        return 0;
    return error_errno(err, e, "%s: no turn to write after %d ms (another "
                       "thread of this process kept it)", what, timeout_ms);
}

void sync_group_turn_end(struct sync_group *g)
{
    pthread_mutex_unlock(&g->turn);
}
