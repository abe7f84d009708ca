/*
 * upkeep.c - serve's periodic work besides the exchange (upkeep.h): the
 * health checks (listeners, disk, audit chain, certificates) handed to
 * core/health.h, and the retention purge (security/retention.h), audited
 * as actor "system" when it removed anything.
 *
 * In a cluster the health checks are each node's (its /healthz reports
 * what it sees: its disk, listeners, the certificates and the audit trail
 * as read through its connection); the purge is the cluster's, run by the
 * node whose connection u->st leads STORE_LEAD_PURGE (docs/architecture.md,
 * "Cluster-wide jobs").
 *
 * Owns its thread, its store connection and the live settings (under a
 * mutex; written only by serve's main thread). Must never: put an error
 * detail, a path outside the names health.h allows or a secret into a
 * health problem (/healthz is unauthenticated); run a purge or a check
 * from another thread than its own; block serve's stop for longer than
 * the check that is running.
 */
#include "security/upkeep.h"

#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "audit/audit.h"
#include "core/health.h"
#include "core/payloads.h"
#include "core/wharf.h"
#include "net/server.h"
#include "security/retention.h"
#include "store/node_store.h"
#include "store/partner_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"

static struct {
    pthread_mutex_t mu;
    int set;
    struct wharf_conf conf;
} upkeep_g = { .mu = PTHREAD_MUTEX_INITIALIZER };

struct upkeep {
    struct wharf *w;
    struct net_server *net;
    struct store *st;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
};

void upkeep_set_conf(const struct wharf_conf *c)
{
    pthread_mutex_lock(&upkeep_g.mu);
    upkeep_g.conf = *c;
    upkeep_g.set = 1;
    pthread_mutex_unlock(&upkeep_g.mu);
}

void upkeep_get_conf(struct wharf_conf *out)
{
    pthread_mutex_lock(&upkeep_g.mu);
    if (upkeep_g.set)
        *out = upkeep_g.conf;
    else
        conf_defaults(out);
    pthread_mutex_unlock(&upkeep_g.mu);
}

/* ---- the checks -------------------------------------------------------------- */

static void problem_add(json_t *problems, const char *kind, const char *name,
                        const char *text)
{
    json_array_append_new(problems, json_pack("{s:s, s:s, s:s}", "problem",
                          kind, "name", name, "text", text));
}

static void check_disk(struct wharf *w, int64_t min_mb, json_t *problems)
{
    struct statvfs sv;
    if (min_mb <= 0 || statvfs(w->dir, &sv) != 0)
        return;
    long long free_mb = (long long)(((unsigned long long)sv.f_bavail *
                                     sv.f_frsize) >> 20);
    if (free_mb >= min_mb)
        return;
    char text[256];
    snprintf(text, sizeof(text), "the data directory's file system has %lld "
             "MiB free, under disk_min_free_mb (%lld): free space or grow it "
             "(new messages fail when it is full)", free_mb,
             (long long)min_mb);
    problem_add(problems, "disk_low", "data", text);
}

static void check_audit(struct wharf *w, struct store *st, json_t *problems)
{
    struct error err = {0};
    struct audit_report r;
    memset(&r, 0, sizeof(r));
    int rc = audit_verify(st, w->vault, &r, &err);
    if (rc == 0) {
        log_recovered(LOG_INFO, -1, NULL, "health:audit", "the audit trail "
                      "verifies again");
        return;
    }
    char text[256];
    if (rc < 0) {
        log_repeat(LOG_WARNING, -1, NULL, "health:audit", "health: audit "
                   "verify could not run: %s", err.msg);
        snprintf(text, sizeof(text), "the audit trail could not be verified "
                 "(the log says why)");
    } else {
        log_repeat(LOG_ERROR, -1, NULL, "health:audit", "ALERT: the audit "
                   "trail does not verify at entry %lld: %s",
                   (long long)r.first_bad, r.problem);
        snprintf(text, sizeof(text), "the audit trail does not verify from "
                 "entry %lld on: run `wharf audit verify` and investigate",
                 (long long)r.first_bad);
    }
    problem_add(problems, "audit_broken", "audit", text);
}

int64_t upkeep_cert_file_expiry(const char *path, struct error *err)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return error_errno(err, errno, "cannot read %s", path);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int ok = x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1;
    X509_free(x);
    if (!ok)
        return error_set(err, "%s holds no PEM certificate", path);
    return (int64_t)timegm(&tm) * 1000;
}

static void check_listener_cert(struct wharf *w, int64_t now,
                                json_t *problems)
{
    struct error err = {0};
    char path[4200];
    if (w->conf.tls_cert[0] == '/')
        snprintf(path, sizeof(path), "%s", w->conf.tls_cert);
    else if (wharf_path(w, w->conf.tls_cert, path, sizeof(path)) < 0)
        return;
    int64_t until = upkeep_cert_file_expiry(path, &err);
    if (until < 0 || until > now)
        return;
    char iso[32], text[256];
    time_iso(until, iso, sizeof(iso));
    snprintf(text, sizeof(text), "the listeners' certificate (tls_cert) "
             "expired at %s: clients refuse it; install a new one and "
             "restart", iso);
    problem_add(problems, "cert_expired", "listener", text);
}

/* The profile and every partner: a problem when none of the owner's
 * certificates is valid any more (an expired one beside its successor is
 * the normal state after a rollover). */
static void check_stored_certs(struct store *st, int64_t now,
                               json_t *problems)
{
    struct error err = {0};
    struct store_cert *c;
    size_t n;
    if (store_certs_list(st, NULL, 0, &c, &n, &err) < 0) {
        log_warn("health: cannot list certificates: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        bool last = i + 1 == n || strcmp(c[i + 1].owner, c[i].owner) != 0;
        if (!last)
            continue;           /* ordered by owner, then not_after */
        if (c[i].not_after > now)
            continue;
        char iso[32], text[320], name[160];
        time_iso(c[i].not_after, iso, sizeof(iso));
        snprintf(name, sizeof(name), "%s", c[i].owner[0] ? c[i].owner
                                                          : "(profile)");
        snprintf(text, sizeof(text), "every certificate of %s%s has expired "
                 "(the newest, %.16s..., at %s): import a new one (`wharf cert "
                 "import`)", c[i].owner[0] ? "partner " : "the AS2 profile",
                 c[i].owner, c[i].id, iso);
        problem_add(problems, "cert_expired", name, text);
    }
    store_certs_free(c, n);
}

json_t *upkeep_check_now(struct wharf *w, struct store *st,
                         int64_t disk_min_free_mb)
{
    json_t *problems = json_array();
    int64_t now = time_now_ms();
    check_disk(w, disk_min_free_mb, problems);
    check_audit(w, st, problems);
    check_listener_cert(w, now, problems);
    check_stored_certs(st, now, problems);
    return problems;
}

static void check_listeners(struct net_server *net, json_t *problems)
{
    static const enum net_which which[] = { NET_ADMIN, NET_PARTNER };
    static const char *const names[] = { "admin", "partner" };
    for (int i = 0; net && i < 2; i++) {
        char why[256];
        if (net_server_listener_down(net, which[i], why, sizeof(why)))
            problem_add(problems, "listener_down", names[i], why);
    }
}

/* ---- the purge ------------------------------------------------------------------- */

/* Payloads (rows or files) that no message names and older than this are
 * left by a node killed between writing a payload and committing its
 * message, or by a commit whose outcome was lost: far longer than any
 * intake batch takes (core/payload_sweep.c). */
#define UPKEEP_ORPHAN_AGE_MS (6 * 3600 * 1000LL)

/* The purge's audit entry (actor system); a failure is logged. */
static void purge_audit(struct upkeep *u, const char *action,
                        const char *target, const char *detail)
{
    struct error err = {0};
    struct audit_event e = { .actor = "system", .action = action,
                             .target = target, .detail = detail };
    if (audit_append(u->st, u->w->vault, &e, &err) < 0)
        log_error("purge: audit entry not written: %s", err.msg);
}

static void upkeep_sweep(struct upkeep *u, int64_t now)
{
    struct error err = {0};
    int64_t n = 0;
    if (wharf_payloads_sweep(u->w, u->st, now - UPKEEP_ORPHAN_AGE_MS, &n,
                             &err) < 0)
        log_error("purge: payloads no message names not all swept: %s",
                  err.msg);
    if (n == 0)
        return;
    log_info("purge: %lld payload(s) no message names removed (an intake "
             "cut short)", (long long)n);
    char detail[64];
    snprintf(detail, sizeof(detail), "removed=%lld", (long long)n);
    purge_audit(u, "payload.sweep", "payloads", detail);
}

static void upkeep_purge(struct upkeep *u, int days)
{
    struct error err = {0};
    struct retention_plan p = { .default_days = days, .now = time_now_ms() };
    struct retention_result r;
    upkeep_sweep(u, p.now);
    int rc = retention_purge(u->w, u->st, &p, &r, &err);
    if (rc < 0)
        log_error("purge: %s (what was done: %lld message(s))", err.msg,
                  (long long)r.messages);
    if (r.messages == 0 && r.shredded == 0 && r.failed == 0 && rc == 0)
        return;
    log_info("purge: %lld expired message(s) deleted (%lld payload bytes, "
             "%lld file(s) shredded); %lld kept under a legal hold",
             (long long)r.messages, (long long)r.bytes,
             (long long)r.shredded, (long long)r.held);
    char detail[256];
    retention_detail(&p, &r, rc == 0, detail, sizeof(detail));
    purge_audit(u, "retention.purge", "messages", detail);
}

/* ---- the thread ------------------------------------------------------------------- */

/* Wait until mono time `until` or stop; true when stopping. */
static bool upkeep_wait(struct upkeep *u, int64_t until)
{
    int64_t ms = until - time_mono_ms();
    struct timespec ts = time_deadline(ms);
    pthread_mutex_lock(&u->mu);
    if (!u->stopping && ms > 0)
        pthread_cond_timedwait(&u->cv, &u->mu, &ts);
    bool stop = u->stopping;
    pthread_mutex_unlock(&u->mu);
    return stop;
}

/* The purge is the cluster's, not each node's: one node at a time runs
 * it (store_lead); the others skip their turn, and take over when the
 * leading node is gone. */
static bool upkeep_leads(struct upkeep *u)
{
    struct error err = {0};
    int led = store_lead(u->st, STORE_LEAD_PURGE, &err);
    if (led < 0)
        log_warn("upkeep: cannot tell whether this node purges: %s",
                 err.msg);
    else if (led == 0)
        log_debug("upkeep: another node of the cluster runs the purge");
    return led == 1;
}

static void *upkeep_main(void *arg)
{
    struct upkeep *u = arg;
    int64_t next_check = 0, next_purge = -1;
    struct wharf_conf *c = malloc(sizeof(*c));
    if (c == NULL) {
        log_error("upkeep: out of memory: no periodic checks or purges");
        return NULL;
    }
    for (;;) {
        upkeep_get_conf(c);
        int64_t now = time_mono_ms();
        if (next_purge < 0)
            next_purge = now + c->purge_interval_ms;
        if (now >= next_check) {
            json_t *problems = upkeep_check_now(u->w, u->st,
                                                c->disk_min_free_mb);
            check_listeners(u->net, problems);
            health_checks(problems);
            json_decref(problems);
            next_check = time_mono_ms() + c->health_check_ms;
        }
        if (now >= next_purge) {
            if (upkeep_leads(u))
                upkeep_purge(u, c->retention_days);
            next_purge = time_mono_ms() + c->purge_interval_ms;
        }
        if (upkeep_wait(u, next_check < next_purge ? next_check
                                                   : next_purge)) {
            free(c);
            return NULL;
        }
    }
}

struct upkeep *upkeep_start(struct wharf *w, struct net_server *net,
                            struct error *err)
{
    struct upkeep *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    u->w = w;
    u->net = net;
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->cv, NULL);
    u->st = store_open(w->db_path, err);
    if (u->st == NULL || pthread_create(&u->thread, NULL, upkeep_main, u)) {
        if (u->st)
            error_set(err, "cannot start the upkeep thread");
        store_close(u->st);
        pthread_mutex_destroy(&u->mu);
        pthread_cond_destroy(&u->cv);
        free(u);
        return NULL;
    }
    return u;
}

void upkeep_stop(struct upkeep *u)
{
    if (u == NULL)
        return;
    pthread_mutex_lock(&u->mu);
    u->stopping = true;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
    pthread_join(u->thread, NULL);
    store_close(u->st);
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cv);
    free(u);
}
