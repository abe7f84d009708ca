/*
 * progress.c - the table of transfers in flight (see progress.h): fed by
 * the engine around each delivery, by intake while a message comes in,
 * by copy loops and libcurl's progress callback; read by GET
 * /api/v1/transfers.
 *
 * Must never: block the thread that moves bytes for longer than a copy
 * under the mutex; hold anything but ids, names and counters (no payload
 * byte, no URL, no credential).
 */
#include "core/progress.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util/id.h"

struct progress_slot {
    bool used;
    uint64_t gen;               /* which begin this slot belongs to */
    char msgid[ID_LEN + 1];
    char connector[96];
    char direction[8];
    int64_t done, total, started, updated;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct progress_slot slots[PROGRESS_MAX];
static uint64_t next_gen = 1;

/* This thread's current transfer: slot index and its generation. */
static __thread int cur = -1;
static __thread uint64_t cur_gen;

void progress_begin(const char *msgid, const char *connector,
                    const char *direction, int64_t total)
{
    progress_end();
    int64_t now = time_now_ms();
    pthread_mutex_lock(&mu);
    for (int i = 0; i < PROGRESS_MAX; i++) {
        struct progress_slot *s = &slots[i];
        if (s->used)
            continue;
        memset(s, 0, sizeof(*s));
        s->used = true;
        s->gen = next_gen++;
        snprintf(s->msgid, sizeof(s->msgid), "%s", msgid ? msgid : "");
        snprintf(s->connector, sizeof(s->connector), "%s",
                 connector ? connector : "");
        snprintf(s->direction, sizeof(s->direction), "%s", direction);
        s->total = total > 0 ? total : -1;
        s->started = s->updated = now;
        cur = i;
        cur_gen = s->gen;
        break;
    }
    pthread_mutex_unlock(&mu);
}

/* The current slot of this thread, locked; NULL (unlocked) when none. */
static struct progress_slot *mine(void)
{
    if (cur < 0)
        return NULL;
    pthread_mutex_lock(&mu);
    struct progress_slot *s = &slots[cur];
    if (s->used && s->gen == cur_gen)
        return s;
    pthread_mutex_unlock(&mu);
    return NULL;
}

void progress_add(int64_t n)
{
    struct progress_slot *s = mine();
    if (s == NULL)
        return;
    s->done += n;
    s->updated = time_now_ms();
    pthread_mutex_unlock(&mu);
}

void progress_set(int64_t done, int64_t total)
{
    struct progress_slot *s = mine();
    if (s == NULL)
        return;
    if (total > 0)
        s->total = total;
    if (done >= 0)
        s->done = done;
    s->updated = time_now_ms();
    pthread_mutex_unlock(&mu);
}

void progress_curl(int64_t dltotal, int64_t dlnow, int64_t ultotal,
                   int64_t ulnow)
{
    struct progress_slot *s = mine();
    if (s == NULL)
        return;
    (void)dlnow;
    if (strcmp(s->direction, "send") == 0) {
        if (ultotal > 0)
            s->total = ultotal;
        if (ulnow > s->done)
            s->done = ulnow;
    } else if (dltotal > 0) {
        s->total = dltotal;
    }
    s->updated = time_now_ms();
    pthread_mutex_unlock(&mu);
}

void progress_end(void)
{
    struct progress_slot *s = mine();
    if (s != NULL) {
        s->used = false;
        pthread_mutex_unlock(&mu);
    }
    cur = -1;
}

json_t *progress_json(void)
{
    json_t *arr = json_array();
    int64_t now = time_now_ms();
    pthread_mutex_lock(&mu);
    struct progress_slot copy[PROGRESS_MAX];
    memcpy(copy, slots, sizeof(copy));
    pthread_mutex_unlock(&mu);
    for (int pass = 0; pass < PROGRESS_MAX; pass++) {
        int oldest = -1;        /* selection by age: at most 64 entries */
        for (int i = 0; i < PROGRESS_MAX; i++)
            if (copy[i].used && (oldest < 0 ||
                                 copy[i].started < copy[oldest].started))
                oldest = i;
        if (oldest < 0)
            break;
        struct progress_slot *s = &copy[oldest];
        int64_t ms = now - s->started;
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:o, s:I,"
            " s:I, s:I}", "message_id", s->msgid, "connector", s->connector,
            "direction", s->direction, "bytes_done", (json_int_t)s->done,
            "bytes_total", s->total > 0 ? json_integer(s->total) : json_null(),
            "started_at", (json_int_t)s->started, "updated_at",
            (json_int_t)s->updated, "rate_bps", (json_int_t)(ms > 0
                ? s->done * 1000 / ms : 0)));
        s->used = false;
    }
    return arr;
}
