/*
 * engine.c - the flow engine: lease -> run -> commit (M1, M2).
 *
 * Threads:
 *   - the poller: every few ms checks whether the stored flow changed (its
 *     generation) and reloads the connectors if so, then calls poll() on
 *     every source that is due, handing it an intake;
 *   - N workers: each leases a batch of due hops (its own store
 *     connection), hands them to their connectors (deliver_batch, or
 *     deliver: up to the connector's concurrency at once, in short-lived
 *     helper threads), and commits every outcome of the batch in one
 *     transaction;
 *     then the workers of the small lane run the due jobs (core/jobs.c:
 *     durable follow-up work of messages, such as AS2 MDNs, each through
 *     its connector type's handler, with its own retry policy).
 *
 * Two lanes, so that one large transfer never holds up small messages:
 * `workers` threads lease hops of messages under large_payload_bytes in
 * batches; `large_workers` more threads lease only the larger ones, one
 * at a time (large_workers 0: one lane for everything).
 *
 * A lease keeper thread renews the leases of whatever the workers are
 * processing, so a batch that outlives lease_seconds is not taken up (and
 * delivered again) by another worker; the leases of a serve that died
 * still run out.
 *
 * The engine owns retries: a connector says WH_RETRY, the engine computes
 * the next attempt (exponential backoff with jitter) or, past the
 * connector's max_attempts, parks the hop as failed (resendable). WH_AGAIN
 * (an asynchronous receipt not there yet) is no failed attempt: the hop
 * waits until the connector's again_at, its attempts unchanged. Leases
 * expire, so the hops of a worker (or node) that died run again.
 *
 * The flow: one live instance of each connector per flow generation
 * (struct flow, reference-counted), shared by the workers, the poller and
 * the partner listener's routes (core/routes.c: engine_flow). A reload
 * (the poller sees the stored generation move, or a route does first)
 * loads the new generation and swaps it in; users of the old one finish
 * with it, and the last to let go closes its connectors.
 *
 * The poller reports to core/health.h (connectors left out of a loaded
 * flow, sources whose polls fail) and logs a failing poll once, then a
 * summary per interval, then "works again" (log_repeat), never per poll.
 * Workers count every committed outcome in core/metrics.h.
 *
 * Must never: know a connector type by name; acknowledge anything itself.
 */
#include "core/engine.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "connectors/connector.h"
#include "core/flow.h"
#include "core/health.h"
#include "core/env.h"
#include "core/intake.h"
#include "core/jobs.h"
#include "core/metrics.h"
#include "core/progress.h"
#include "core/wharf.h"
#include "security/detectors.h"
#include "store/node_store.h"
#include "store/store.h"
#include "util/fanout.h"
#include "util/id.h"
#include "util/log.h"
#include "vault/keyproc.h"

#define IDLE_WAIT_MS 200        /* workers re-check the database this often */
#define MIN_WAIT_MS 100         /* WH_AGAIN: a hop waits at least this long */
#define RELOAD_CHECK_MS 500

struct worker {
    struct engine *e;
    struct flow *flow;          /* the generation of the current batch */
    int index;
    pthread_t thread;
    char base[96];              /* host/pid/wN */
    /* The lease owner of the current round (base/bK: each round of
     * hops and jobs its own, so what a round left leased - its commit
     * failed - is never renewed again) and whether a round runs: the lease
     * keeper renews only that. Written by the worker under own_mu. */
    pthread_mutex_t own_mu;
    char owner[128];
    unsigned long long round;
    int busy;
    unsigned seed;
    struct store_lane lane;     /* the message sizes it leases */
    int batch;                  /* hops (and jobs) per lease */
    int jobs;                   /* runs due jobs too (the small lane) */
};

struct engine {
    struct wharf *w;
    pthread_mutex_t flow_mu;        /* e->flow and taking references */
    pthread_mutex_t reload_mu;      /* one load at a time */
    struct flow *flow;              /* the current generation: one
                                       reference is the engine's */
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* wakes workers after an intake */
    int stopping;                   /* under mu */
    pthread_t poller;
    pthread_t keeper;               /* renews the workers' leases */
    int keeper_started;
    char node[80];                  /* host/pid: the nodes row (R21) */
    int64_t started_at;
    struct worker *workers;
    int nworkers;
};

long long engine_backoff_ms(long long initial_ms, long long max_ms,
                            int attempts, unsigned rnd)
{
    long long d = initial_ms;
    for (int i = 1; i < attempts && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    long long half = d / 2;
    return half + (half > 0 ? (long long)(rnd % (unsigned long long)(half + 1)) : 0);
}

static int engine_stopping(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    int s = e->stopping;
    pthread_mutex_unlock(&e->mu);
    return s;
}

static void engine_wait(struct engine *e, int64_t ms)
{
    struct timespec ts = time_deadline(ms);
    pthread_mutex_lock(&e->mu);
    if (!e->stopping)
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    pthread_mutex_unlock(&e->mu);
}

static void engine_wake(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* conn_env_set_wake: a job became due (added, or its input arrived). */
static void engine_wake_jobs(void *ud)
{
    engine_wake(ud);
}

/* ---- workers ------------------------------------------------------------- */

/* One leased hop and everything needed to run and commit it. */
struct job {
    struct store_hop *hop;
    struct store_message row;
    struct message msg;
    struct delivery d;
    struct connector *c;
    const char **next;
    size_t nnext;
    struct store_outcome out;
    char error[ERROR_MSG_MAX + 64];
    int run;                    /* ready to be handed to its connector */
};

static void job_prepare(struct worker *wk, struct store *st, struct job *j)
{
    struct error err = {0};
    struct engine *e = wk->e;
    j->c = flow_find(wk->flow, j->hop->connector);
    int found = store_message_get(st, j->hop->message_id, &j->row, &err);
    j->msg.wharf = e->w;
    memcpy(j->msg.id, j->hop->message_id, sizeof(j->msg.id));
    j->msg.source = j->row.source;
    j->msg.filename = j->row.filename;
    j->msg.size = j->row.size;
    j->msg.sha256 = j->row.sha256;
    j->msg.payload_path = j->row.payload_path;
    j->d.msg = &j->msg;
    j->d.hop_id = j->hop->id;
    j->d.status = WH_RETRY;
    if (found != 0)
        error_set(&j->d.err, "message %s cannot be read: %s", j->msg.id,
                  found < 0 ? err.msg : "not found");
    else if (j->c == NULL)
        error_set(&j->d.err, "connector '%s' is not configured (or failed "
                  "to open; see the log)", j->hop->connector);
    else
        j->run = 1;
}

/* A connector's answer must be one the engine knows; WH_AGAIN only with
 * a time to look again. Anything else is a retry. */
static void job_check_status(const struct connector *c, struct delivery *d)
{
    if (d->status == WH_OK || d->status == WH_FAIL || d->status == WH_RETRY ||
        (d->status == WH_AGAIN && d->again_at > 0))
        return;
    d->status = WH_RETRY;
    if (d->err.msg[0] == '\0')
        error_set(&d->err, "connector %s did not finish the delivery",
                  c->name);
}

/* deliver() of one delivery of a batch (fanout_run's fn). */
struct deliver_set {
    struct connector *c;
    struct delivery *d;
};

static void deliver_one(void *ctx, size_t i)
{
    struct deliver_set *s = ctx;
    struct delivery *d = &s->d[i];
    progress_begin(d->msg->id, s->c->name, "send", d->msg->size);
    d->status = s->c->type->deliver(s->c, d);
    progress_end();
}

/* deliver() of each of d[0..n): the connector's concurrency at once. */
static void deliver_each(struct connector *c, struct delivery *d, size_t n)
{
    struct deliver_set s = { c, d };
    fanout_run(n, c->concurrency > 0 ? (size_t)c->concurrency : 1,
               deliver_one, &s);
}

/* Run every job of connector c (those with run set) as one batch. */
static void run_connector(struct connector *c, struct job *jobs, size_t n)
{
    struct delivery *ds = calloc(n, sizeof(*ds));
    size_t k = 0;
    if (ds == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (jobs[i].c == c && jobs[i].run)
            ds[k++] = jobs[i].d;
    if (c->type->deliver_batch)
        c->type->deliver_batch(c, ds, k);
    else if (k > 0)
        deliver_each(c, ds, k);
    for (size_t i = 0, m = 0; i < n && m < k; i++)
        if (jobs[i].c == c && jobs[i].run) {
            jobs[i].d = ds[m++];
            jobs[i].run = 0;
            job_check_status(c, &jobs[i].d);
        }
    free(ds);
}

static void job_outcome(struct worker *wk, struct job *j)
{
    struct retry_policy def = { 10, 1000, 600000 };
    const struct retry_policy *rp = j->c ? &j->c->retry : &def;
    struct store_outcome *o = &j->out;
    o->hop_id = j->hop->id;
    o->message_id = j->hop->message_id;
    o->connector = j->hop->connector;
    o->owner = wk->owner;
    o->kept = conn_held_row(j->d.held);     /* recorded with the outcome */
    if (j->d.status == WH_AGAIN) {      /* waiting: no attempt counted */
        int64_t soon = time_now_ms() + MIN_WAIT_MS;
        o->result = HOP_WAIT;
        o->attempts = j->hop->attempts;
        o->next_at = j->d.again_at > soon ? j->d.again_at : soon;
        o->receipt = j->d.receipt[0] ? j->d.receipt : NULL;
        return;
    }
    o->attempts = j->hop->attempts + 1;
    if (j->d.status == WH_OK) {
        o->result = HOP_SENT;
        o->receipt = j->d.receipt[0] ? j->d.receipt : NULL;
        /* delivering to a partner ends the path: the connector's links
         * are for what the partner sends (AS2) */
        if (j->c && j->c->type->ends_path)
            j->nnext = 0;
        else
            j->nnext = flow_next(wk->flow, j->hop->connector, &j->next);
        o->next = j->next;
        o->nnext = j->nnext;
        return;
    }
    o->error = j->error;
    snprintf(j->error, sizeof(j->error), "%s", j->d.err.msg[0] ? j->d.err.msg
             : "connector gave no reason");
    if (keyproc_lost()) {
        /* the key process died under this attempt (serve stops now):
         * nothing was decided, so the hop is neither failed nor charged an
         * attempt; it is sent again after the restart */
        o->result = HOP_RETRY;
        o->attempts = j->hop->attempts;
        o->next_at = time_now_ms() + MIN_WAIT_MS;
        return;
    }
    if (j->d.status == WH_RETRY && o->attempts < rp->max_attempts) {
        o->result = HOP_RETRY;
        o->next_at = time_now_ms() + engine_backoff_ms(rp->initial_ms,
                     rp->max_ms, o->attempts, (unsigned)rand_r(&wk->seed));
        return;
    }
    o->result = HOP_FAILED;
    if (j->d.status == WH_RETRY)
        snprintf(j->error, sizeof(j->error), "%s (gave up after %d "
                 "attempts)", j->d.err.msg, o->attempts);
}

static void job_log(const struct job *j)
{
    const struct store_outcome *o = &j->out;
    int lvl = j->c ? j->c->log_level : -1;
    if (o->result == HOP_SENT)
        log_write(LOG_INFO, lvl, o->connector, o->message_id,
                  "delivered (attempt %d)%s%s", o->attempts,
                  o->receipt ? ": " : "", o->receipt ? o->receipt : "");
    else if (o->result == HOP_WAIT)
        log_write(o->receipt ? LOG_INFO : LOG_DEBUG, lvl, o->connector,
                  o->message_id, "%s (looks again in %lld ms)",
                  o->receipt ? o->receipt : "still waiting",
                  (long long)(o->next_at - time_now_ms()));
    else if (o->result == HOP_RETRY)
        log_write(LOG_WARNING, lvl, o->connector, o->message_id,
                  "attempt %d failed, retry in %lld ms: %s", o->attempts,
                  (long long)(o->next_at - time_now_ms()), o->error);
    else
        log_write(LOG_ERROR, lvl, o->connector, o->message_id,
                  "failed: %s", o->error);
}

/* The committed outcome in /metrics (core/metrics.h). */
static void job_count(const struct job *j)
{
    const struct store_outcome *o = &j->out;
    if (o->result == HOP_WAIT)
        return;
    metrics_delivery(o->connector, o->result == HOP_SENT ? METRICS_SENT
                     : o->result == HOP_RETRY ? METRICS_RETRY : METRICS_FAILED,
                     j->row.size, time_now_ms() - j->row.created_at);
}

/* Tell the detectors (R19: failing deliveries, parked messages). */
static void job_detect(struct store *st, const struct store_outcome *o)
{
    static const enum detect_hop map[] = {
        [HOP_SENT] = DETECT_HOP_SENT, [HOP_RETRY] = DETECT_HOP_RETRY,
        [HOP_FAILED] = DETECT_HOP_PARKED, [HOP_WAIT] = DETECT_HOP_WAIT,
    };
    detect_hop(st, o->connector, map[o->result], o->message_id, o->error);
}

static void jobs_commit(struct worker *wk, struct store *st, struct job *jobs,
                        size_t n)
{
    struct store_outcome *outs = calloc(n, sizeof(*outs));
    struct error err = {0};
    size_t skipped = 0;
    if (outs == NULL)
        return;         /* the leases expire and the hops run again */
    for (size_t i = 0; i < n; i++)
        outs[i] = jobs[i].out;
    if (store_hop_finish(st, outs, n, &skipped, &err) < 0)
        log_error("worker %d: cannot commit %zu outcomes (they will run "
                  "again when their lease expires): %s", wk->index, n, err.msg);
    else
        for (size_t i = 0; i < n; i++) {
            job_log(&jobs[i]);
            job_count(&jobs[i]);
            job_detect(st, &jobs[i].out);
        }
    if (skipped)
        log_warn("worker %d: %zu hop(s) had lost their lease; outcome not "
                 "recorded, they run again", wk->index, skipped);
    free(outs);
}

static void jobs_free(struct job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        store_message_clear(&jobs[i].row);
        free(jobs[i].next);
        conn_held_free(jobs[i].d.held);
    }
    free(jobs);
}

/* Lease, run and commit one batch. Returns the number of hops handled. */
static size_t worker_batch(struct worker *wk, struct store *st)
{
    struct engine *e = wk->e;
    struct error err = {0};
    struct store_hop *hops = NULL;
    size_t n = 0;
    if (store_hop_lease_lane(st, wk->owner, time_now_ms(),
                             e->w->conf.lease_ms, (size_t)wk->batch,
                             &wk->lane, &hops, &n, &err) < 0) {
        log_error("worker %d: cannot lease hops: %s", wk->index, err.msg);
        return 0;
    }
    if (n == 0)
        return 0;
    struct job *jobs = calloc(n, sizeof(*jobs));
    if (jobs == NULL) {
        store_hops_free(hops, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        jobs[i].hop = &hops[i];
        job_prepare(wk, st, &jobs[i]);
    }
    for (size_t i = 0; i < n; i++)
        if (jobs[i].run)
            run_connector(jobs[i].c, jobs, n);
    for (size_t i = 0; i < n; i++)
        job_outcome(wk, &jobs[i]);
    jobs_commit(wk, st, jobs, n);
    jobs_free(jobs, n);
    store_hops_free(hops, n);
    return n;
}

/* A new round: its own lease owner, renewed by the keeper until its end. */
static void worker_round(struct worker *wk, int busy)
{
    pthread_mutex_lock(&wk->own_mu);
    if (busy)
        snprintf(wk->owner, sizeof(wk->owner), "%s/b%llu", wk->base,
                 ++wk->round);
    wk->busy = busy;
    pthread_mutex_unlock(&wk->own_mu);
}

/* How much lower the large lane's threads run (nice steps). */
#define LARGE_LANE_NICE 10

/* The large lane yields the CPU to small messages when both want it: its
 * thread runs under SCHED_IDLE (and LARGE_LANE_NICE steps lower, which
 * is what counts where the policy cannot be set), and so do the stage
 * threads a transfer starts (Linux threads inherit both), so a 1 GiB
 * transfer does not take the cycles 10 KiB messages need, yet still gets
 * every idle one. SCHED_IDLE because a thread waking to serve a small
 * message then takes the core at once; against a thread that is merely
 * nicer it may wait for that thread's slice to end, and a small message
 * is a chain of such waits (docs/performance.md, "AS2 mixed load").
 * Best effort: nothing fails without it. */
static void worker_yield_cpu(const struct worker *wk)
{
    if (wk->lane.min_size == 0)
        return;                     /* a small-message (or the only) lane */
    id_t self = (id_t)gettid();
    errno = 0;
    int now = getpriority(PRIO_PROCESS, self);
    if (errno == 0)
        (void)setpriority(PRIO_PROCESS, self, now + LARGE_LANE_NICE > 19
                          ? 19 : now + LARGE_LANE_NICE);
    struct sched_param sp = { .sched_priority = 0 };
    (void)sched_setscheduler(0, SCHED_IDLE, &sp);
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct error err = {0};
    worker_yield_cpu(wk);
    struct store *st = store_open(wk->e->w->db_path, &err);
    if (st == NULL) {
        log_error("worker %d cannot open the store: %s", wk->index, err.msg);
        return NULL;
    }
    while (!engine_stopping(wk->e)) {
        wk->flow = engine_flow(wk->e);
        worker_round(wk, 1);
        size_t n = worker_batch(wk, st);
        if (wk->jobs)
            n += jobs_run(wk->flow, st, wk->owner, wk->e->w->conf.lease_ms,
                          (size_t)wk->batch, &wk->seed);
        worker_round(wk, 0);
        flow_free(wk->flow);
        wk->flow = NULL;
        if (n == 0)
            engine_wait(wk->e, IDLE_WAIT_MS);
    }
    store_close(st);
    return NULL;
}

/* ---- the lease keeper ------------------------------------------------------ */

#define BEAT_MAX_MS 5000

/* This node's row in `nodes` (wharf cluster status). Failures are logged:
 * the beat is for people, leases do not depend on it. */
static void node_beat(struct engine *e, struct store *st, int64_t every)
{
    char address[300];
    snprintf(address, sizeof(address), "admin %s, partner %s",
             e->w->conf.admin_listen, e->w->conf.partner_listen);
    struct store_node n = { .id = e->node, .address = address,
                            .version = WHARF_VERSION,
                            .started_at = e->started_at,
                            .seen_at = time_now_ms(), .beat_ms = every };
    struct error err = {0};
    if (store_node_beat(st, &n, &err) < 0)
        log_warn("cannot record this node's heartbeat: %s", err.msg);
}

/* A message received with its next hops held until its MDN went out
 * (AS2) stays held if the node that received it dies between the MDN and
 * the release: after ten leases (at least a minute) any node releases it,
 * so a message acknowledged to a partner is delivered. */
static void holds_sweep(struct engine *e, struct store *st, int64_t now)
{
    int64_t lease = e->w->conf.lease_ms;
    int64_t stale = 10 * lease > 60000 ? 10 * lease : 60000;
    int64_t n = 0;
    struct error err = {0};
    if (store_release_stale_holds(st, now - stale, &n, &err) < 0)
        log_warn("cannot release stale holds: %s", err.msg);
    else if (n > 0)
        log_warn("released %lld hop(s) held for more than %lld s: the node "
                 "that received them did not release them after their MDN",
                 (long long)n, (long long)(stale / 1000));
}

/* Every third of lease_ms, extend by lease_ms the leases of the round
 * each busy worker is in (a round's own owner: what an earlier round left
 * leased, its commit having failed, runs out and runs again): a batch that outlives one lease (slow partners,
 * a large batch) keeps its hops and jobs, so no other worker delivers
 * them a second time. When serve dies the renewals stop and the leases
 * run out as before. */
static void *keeper_main(void *arg)
{
    struct engine *e = arg;
    struct error err = {0};
    int64_t lease = e->w->conf.lease_ms;
    int64_t every = lease / 3 > 100 ? lease / 3 : 100;
    if (every > BEAT_MAX_MS)
        every = BEAT_MAX_MS;        /* also this node's heartbeat */
    struct store *st = store_open(e->w->db_path, &err);
    if (st == NULL) {
        log_error("lease keeper cannot open the store (a batch longer than "
                  "lease_seconds may be delivered twice): %s", err.msg);
        return NULL;
    }
    node_beat(e, st, every);
    int64_t next = time_now_ms() + every;
    while (!engine_stopping(e)) {
        int64_t now = time_now_ms();
        if (now < next) {
            engine_wait(e, next - now);
            continue;
        }
        for (int i = 0; i < e->nworkers; i++) {
            struct worker *wk = &e->workers[i];
            char owner[sizeof(wk->owner)];
            pthread_mutex_lock(&wk->own_mu);
            int busy = wk->busy;
            memcpy(owner, wk->owner, sizeof(owner));
            pthread_mutex_unlock(&wk->own_mu);
            if (busy && store_leases_renew(st, owner, now + lease, &err) < 0)
                log_warn("cannot renew the leases of worker %d: %s", i,
                         err.msg);
        }
        node_beat(e, st, every);
        holds_sweep(e, st, now);
        next = now + every;
    }
    if (store_node_stopped(st, e->node, time_now_ms(), &err) < 0)
        log_warn("cannot record this node's stop: %s", err.msg);
    store_close(st);
    return NULL;
}

/* ---- poller and reloader -------------------------------------------------- */

struct poll_state {
    int64_t *due;           /* per connector of generation */
    size_t n;
    int64_t generation;
    int64_t next_reload_check;
};

/* Tell health.h which connectors of f's stored flow are left out (failed
 * to open) and which run. */
static void engine_health(const struct flow *f)
{
    const char **left = calloc(f->rows.nconns + 1, sizeof(*left));
    const char **running = calloc(f->nconns + 1, sizeof(*running));
    size_t nleft = 0;
    if (left == NULL || running == NULL) {
        free(left);
        free(running);
        return;
    }
    for (size_t i = 0; i < f->rows.nconns; i++)
        if (flow_find(f, f->rows.conns[i].name) == NULL)
            left[nleft++] = f->rows.conns[i].name;
    for (size_t i = 0; i < f->nconns; i++)
        running[i] = f->conns[i]->name;
    health_left_out(left, nleft);
    health_running(running, f->nconns);
    free(left);
    free(running);
}

struct flow *engine_flow(struct engine *e)
{
    pthread_mutex_lock(&e->flow_mu);
    struct flow *f = flow_hold(e->flow);
    pthread_mutex_unlock(&e->flow_mu);
    return f;
}

struct wharf *engine_wharf(const struct engine *e)
{
    return e->w;
}

/* Take f in (loaded, one reference ours) as the current generation. */
static void engine_swap(struct engine *e, struct flow *f)
{
    conn_env_set_wake(f->env, engine_wake_jobs, e);
    engine_health(f);
    pthread_mutex_lock(&e->flow_mu);
    struct flow *old = e->flow;
    e->flow = f;
    pthread_mutex_unlock(&e->flow_mu);
    flow_free(old);         /* closed when its last user lets go */
    log_info("flow generation %lld loaded: %zu connector(s), %zu link(s)",
             (long long)f->generation, f->nconns, f->rows.nlinks);
    engine_wake(e);
}

int engine_reload(struct engine *e, struct store *st, int64_t gen,
                  struct error *err)
{
    int rc = 0;
    pthread_mutex_lock(&e->reload_mu);
    if (gen != e->flow->generation) {   /* written only under reload_mu */
        struct flow *f = flow_load(e->w, st, err);
        if (f == NULL) {
            log_repeat(LOG_ERROR, -1, NULL, "flow:load", "cannot load the "
                       "flow (the running one stays in use): %s", err->msg);
            rc = -1;
        } else {
            log_recovered(LOG_INFO, -1, NULL, "flow:load", "the flow loads "
                          "again");
            engine_swap(e, f);
        }
    }
    pthread_mutex_unlock(&e->reload_mu);
    return rc;
}

static void maybe_reload(struct engine *e, struct store *st,
                         struct poll_state *ps)
{
    struct error err = {0};
    int64_t now = time_mono_ms();
    if (now < ps->next_reload_check)
        return;
    ps->next_reload_check = now + RELOAD_CHECK_MS;
    int64_t gen = store_flow_generation(st, &err);
    if (gen >= 0)
        engine_reload(e, st, gen, &err);
}

static int poll_one(struct engine *e, struct store *st, const struct flow *f,
                    struct connector *c)
{
    struct error err = {0};
    const char **next = NULL;
    size_t nnext = flow_next(f, c->name, &next);
    struct intake *in = intake_new(e->w, st, c->name, next, nnext);
    enum wh_status s = in ? c->type->poll(c, in, &err) : WH_RETRY;
    char key[96];
    snprintf(key, sizeof(key), "poll:%s", c->name);
    if (s != WH_OK && s != WH_DECLINED) {
        log_repeat(LOG_WARNING, c->log_level, c->name, key, "poll failed: %s",
                   in ? err.msg : "out of memory");
        health_poll(c->name, false);
    } else {
        log_recovered(LOG_INFO, c->log_level, c->name, key, "poll works "
                      "again");
        health_poll(c->name, true);
    }
    intake_free(in);
    free(next);
    return s == WH_OK;
}

/* The due times are per connector of one generation: a new generation
 * starts them afresh. */
static int poll_generation(struct poll_state *ps, const struct flow *f)
{
    if (ps->due && ps->generation == f->generation)
        return 0;
    free(ps->due);
    ps->n = f->nconns;
    ps->generation = f->generation;
    ps->due = calloc(ps->n + 1, sizeof(*ps->due));
    return ps->due ? 0 : -1;
}

static void poll_sources(struct engine *e, struct store *st,
                         struct poll_state *ps)
{
    struct flow *f = engine_flow(e);
    int got = 0;
    for (size_t i = 0; poll_generation(ps, f) == 0 && i < f->nconns; i++) {
        struct connector *c = f->conns[i];
        int64_t now = time_mono_ms();
        if (c->type->poll == NULL || now < ps->due[i])
            continue;
        got |= poll_one(e, st, f, c);
        ps->due[i] = time_mono_ms() + c->poll_ms;
    }
    flow_free(f);
    if (got)
        engine_wake(e);
}

static void *poller_main(void *arg)
{
    struct engine *e = arg;
    struct error err = {0};
    struct poll_state ps = {0};
    struct store *st = store_open(e->w->db_path, &err);
    if (st == NULL) {
        log_error("poller cannot open the store: %s", err.msg);
        return NULL;
    }
    while (!engine_stopping(e)) {
        maybe_reload(e, st, &ps);
        poll_sources(e, st, &ps);
        usleep(20 * 1000);
    }
    free(ps.due);
    store_close(st);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------ */

/* The lane of a worker: the large one leases single hops of messages of
 * large_payload_bytes or more; the others the rest (everything when there
 * is no large lane). */
static void worker_lane(struct worker *wk, const struct wharf_conf *c,
                        int large)
{
    int lanes = c->large_workers > 0;
    wk->lane.min_size = large ? c->large_payload_bytes : 0;
    wk->lane.max_size = large || !lanes ? INT64_MAX
                                        : c->large_payload_bytes - 1;
    wk->batch = large ? 1 : c->batch;
    wk->jobs = !large;
}

static int engine_init(struct engine *e, struct wharf *w, struct error *err)
{
    pthread_mutex_init(&e->flow_mu, NULL);
    pthread_mutex_init(&e->reload_mu, NULL);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->w = w;
    e->nworkers = w->conf.workers + w->conf.large_workers;
    e->workers = calloc((size_t)e->nworkers, sizeof(*e->workers));
    if (e->workers == NULL)
        return error_set(err, "out of memory");
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    snprintf(e->node, sizeof(e->node), "%s/%d", host, (int)getpid());
    e->started_at = time_now_ms();
    for (int i = 0; i < e->nworkers; i++) {
        struct worker *wk = &e->workers[i];
        wk->e = e;
        wk->index = i;
        pthread_mutex_init(&wk->own_mu, NULL);
        snprintf(wk->base, sizeof(wk->base), "%s/%d/w%d", host,
                 (int)getpid(), i);
        RAND_bytes((unsigned char *)&wk->seed, sizeof(wk->seed));
        worker_lane(wk, &w->conf, i >= w->conf.workers);
    }
    return 0;
}

static void engine_free_parts(struct engine *e)
{
    flow_free(e->flow);
    pthread_mutex_destroy(&e->flow_mu);
    pthread_mutex_destroy(&e->reload_mu);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    for (int i = 0; e->workers && i < e->nworkers; i++)
        pthread_mutex_destroy(&e->workers[i].own_mu);
    free(e->workers);
    free(e);
}

struct engine *engine_start(struct wharf *w, struct error *err)
{
    struct engine *e = calloc(1, sizeof(*e));
    if (e == NULL || engine_init(e, w, err) < 0) {
        if (e)
            free(e->workers);
        free(e);
        error_set(err, "out of memory");
        return NULL;
    }
    /* Load the flow before any worker can lease a hop that needs it. */
    struct store *st = store_open(w->db_path, err);
    struct flow *f = st ? flow_load(w, st, err) : NULL;
    store_close(st);
    if (f == NULL) {
        engine_free_parts(e);
        return NULL;
    }
    engine_swap(e, f);
    if (pthread_create(&e->poller, NULL, poller_main, e) != 0) {
        engine_free_parts(e);
        error_set(err, "cannot start the poller thread");
        return NULL;
    }
    for (int i = 0; i < e->nworkers; i++)
        if (pthread_create(&e->workers[i].thread, NULL, worker_main,
                           &e->workers[i]) != 0)
            log_error("cannot start worker %d", i);
    e->keeper_started = pthread_create(&e->keeper, NULL, keeper_main, e) == 0;
    if (!e->keeper_started)
        log_error("cannot start the lease keeper (a batch longer than "
                  "lease_seconds may be delivered twice)");
    log_info("engine started: %d worker(s), batch %d, lease %lld ms; "
             "%d more for messages of %lld bytes or more", w->conf.workers,
             w->conf.batch, (long long)w->conf.lease_ms,
             w->conf.large_workers, (long long)w->conf.large_payload_bytes);
    return e;
}

void engine_stop(struct engine *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->poller, NULL);
    if (e->keeper_started)
        pthread_join(e->keeper, NULL);
    for (int i = 0; i < e->nworkers; i++)
        if (e->workers[i].thread)
            pthread_join(e->workers[i].thread, NULL);
    engine_free_parts(e);
    log_info("engine stopped");
}
