/*
 * security.c - the two threads of security.h and the copy of their
 * settings.
 *
 * Owns the threads, their stop flag and wake-up condition, and the
 * running copy of struct security_conf (under a mutex: the main thread
 * writes it on SIGHUP, the threads copy it once per round). Each thread
 * has its own store connection (wharf_store).
 *
 * In a cluster each thread's work is partly the cluster's: one node's
 * detector thread runs the rules over shared rows (STORE_LEAD_DETECT:
 * stored certificates, the periodic audit verify), one node's notifier
 * sends the timeline (STORE_LEAD_NOTIFY: the channels' cursors are
 * shared). Each thread asks store_lead on its own connection every round
 * and works on that same connection (leadership is the connection's);
 * when the leading node dies, the next node that asks takes over. The
 * table of which periodic job is whose: docs/architecture.md, "Cluster-
 * wide jobs".
 *
 * Must never: hold its mutex while calling out; keep serve from stopping
 * longer than one round (a send is bounded by its timeouts).
 */
#include "security/security.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "core/wharf.h"
#include "security/alerts.h"
#include "security/detectors.h"
#include "security/notify.h"
#include "security/security_conf.h"
#include "store/node_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"

#define SECURITY_TICK_MS 1000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct security_conf conf;
    struct wharf *w;
    bool running, detecting, stop, woken;
    pthread_t detector, notifier;
} sec_g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

void security_set_conf(const struct security_conf *c)
{
    struct error err = {0};
    struct store *st = sec_g.w ? wharf_store(sec_g.w, &err) : NULL;
    if (st != NULL)             /* a channel new to this run starts now */
        notify_start_cursors(st, c);
    pthread_mutex_lock(&sec_g.mu);
    sec_g.conf = *c;
    pthread_mutex_unlock(&sec_g.mu);
}

/* alerts.h's wake-up: a new timeline entry. */
static void security_wake(void)
{
    pthread_mutex_lock(&sec_g.mu);
    sec_g.woken = true;
    pthread_cond_broadcast(&sec_g.cv);
    pthread_mutex_unlock(&sec_g.mu);
}

/* Wait up to ms (or until woken when wakeable); copy the settings. false
 * when the threads must stop. */
static bool security_wait(int64_t ms, bool wakeable, struct security_conf *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&sec_g.mu);
    while (!sec_g.stop && !(wakeable && sec_g.woken) &&
           pthread_cond_timedwait(&sec_g.cv, &sec_g.mu, &ts) == 0)
        ;
    if (wakeable)
        sec_g.woken = false;
    bool go = !sec_g.stop;
    *c = sec_g.conf;
    pthread_mutex_unlock(&sec_g.mu);
    return go;
}

/* Whether st (this thread's connection) leads job this round; a log
 * line when that changes, in a cluster only (on one node it always
 * leads). *was: the last answer, -1 before the first. */
static bool security_leads(struct wharf *w, struct store *st,
                           enum store_lead_job job, const char *what,
                           int *was)
{
    struct error err = {0};
    int led = store_lead(st, job, &err);
    if (led < 0) {
        log_repeat(LOG_WARNING, -1, NULL, "security:lead", "cannot tell "
                   "whether this node %s: %s", what, err.msg);
        return false;
    }
    if (led != *was && wharf_store_shared(w)) {
        if (led)
            log_info("cluster: this node now %s", what);
        else
            log_info("cluster: %s %s", *was < 0 ? "another node" :
                     "(connection lost) another node now", what);
    }
    *was = led;
    return led == 1;
}

static void *security_detector(void *arg)
{
    struct wharf *w = arg;
    struct security_conf c;
    struct error err = {0};
    int64_t start = time_mono_ms(), next_check = 0, next_audit = 0;
    int was = -1;
    while (security_wait(SECURITY_TICK_MS, false, &c)) {
        struct store *st = wharf_store(w, &err);
        if (st == NULL) {
            log_repeat(LOG_ERROR, -1, NULL, "security:store", "security "
                       "checks: %s", err.msg);
            continue;
        }
        detect_flush(st);
        int64_t now = time_mono_ms();
        if (next_check == 0)        /* first round after one interval */
            next_check = start + c.check_ms;
        if (next_audit == 0)
            next_audit = start + c.audit_verify_ms;
        if (now < next_check)
            continue;
        bool audit = c.audit_verify_ms > 0 && now >= next_audit;
        bool lead = security_leads(w, st, STORE_LEAD_DETECT, "runs the "
                                   "cluster's alert checks (stored "
                                   "certificates, audit verify)", &was);
        detect_run(w, st, &c, time_now_ms(), audit, lead);
        next_check = time_mono_ms() + c.check_ms;
        if (audit)
            next_audit = time_mono_ms() + c.audit_verify_ms;
    }
    return NULL;
}

static void *security_notifier(void *arg)
{
    struct wharf *w = arg;
    struct security_conf c;
    struct error err = {0};
    int was = -1;
    while (security_wait(SECURITY_TICK_MS, true, &c)) {
        struct store *st = wharf_store(w, &err);
        if (st == NULL) {
            log_repeat(LOG_ERROR, -1, NULL, "security:store", "notifications:"
                       " %s", err.msg);
            continue;
        }
        if (!security_leads(w, st, STORE_LEAD_NOTIFY, "sends the cluster's "
                            "notifications", &was))
            continue;
        /* a full batch may leave more: go again at once */
        while (notify_round(w, st, &c, time_now_ms()) > 0) {
            pthread_mutex_lock(&sec_g.mu);
            bool stop = sec_g.stop;
            pthread_mutex_unlock(&sec_g.mu);
            if (stop)
                break;
        }
    }
    return NULL;
}

int security_start(struct wharf *w, struct error *err)
{
    if (sec_g.running)
        return error_set(err, "security threads already running");
    if (wharf_store(w, err) == NULL)
        return -1;
    sec_g.w = w;
    security_set_conf(&w->conf.security);
    sec_g.stop = false;
    detect_reset();
    notify_reset();
    alerts_set_wake(security_wake);
    if (pthread_create(&sec_g.detector, NULL, security_detector, w) != 0)
        return error_set(err, "cannot start the security detector thread");
    sec_g.detecting = true;
    if (pthread_create(&sec_g.notifier, NULL, security_notifier, w) != 0) {
        security_stop();
        return error_set(err, "cannot start the notifier thread");
    }
    sec_g.running = true;
    return 0;
}

void security_stop(void)
{
    pthread_mutex_lock(&sec_g.mu);
    sec_g.stop = true;
    pthread_cond_broadcast(&sec_g.cv);
    pthread_mutex_unlock(&sec_g.mu);
    if (sec_g.detecting)
        pthread_join(sec_g.detector, NULL);
    sec_g.detecting = false;
    if (sec_g.running)
        pthread_join(sec_g.notifier, NULL);
    alerts_set_wake(NULL);
    sec_g.running = false;
    sec_g.w = NULL;
}
