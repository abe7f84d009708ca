/*
 * detectors.c - the rules of detectors.h: which audit entries, vault
 * failures, hop outcomes and periodic findings become alerts, at which
 * level and with which words, and when each condition clears.
 *
 * Owns the delivery tracker (per destination: since when every delivery
 * failed, whether one worked since) and the queue of integrity failures
 * the vault reported (bounded: beyond DETECT_QUEUE_MAX waiting reports
 * the newest are dropped with a log line; the first of a burst always
 * gets through). Both under one mutex, never held while calling out.
 *
 * Reuses, never duplicates: the failing polls of core/health.h (the same
 * state /healthz reports), the audit trail's own verify, the certificate
 * rows of the store.
 *
 * In a cluster (several nodes on one PostgreSQL store) the periodic rules
 * are of two sorts. Cluster-wide, over shared rows, run only by the node
 * that leads STORE_LEAD_DETECT (detect_run's lead): the stored
 * certificates' expiry (keys "cert:..."), the periodic audit verify, and
 * resolving those alerts. Per node, each node its own: its failing
 * sources and left-out connectors (its own polls), its deliveries (its
 * own hops), its data dir's disk, its listeners' certificate file (keys
 * "tls:..."). A node resolves a per-node alert only when it is its own:
 * named after its own paths (data dir, listeners' certificate) or raised
 * by it in this run (those keys are kept: det_g.mine), so it never clears
 * another node's condition; on one node (SQLite) every live alert of a
 * periodic kind not found again is resolved, as before.
 *
 * Must never: write an alert per poll or per delivery (only state
 * changes reach the store: a raise when a threshold is crossed, a clear
 * when a live alert's condition ended); put a secret in a summary.
 */
#include "security/detectors.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "audit/audit.h"
#include "core/health.h"
#include "core/wharf.h"
#include "security/alerts.h"
#include "security/security_conf.h"
#include "store/partner_store.h"
#include "store/security_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"

#define DETECT_TRACK_MAX 1024
#define DETECT_QUEUE_MAX 32
#define DETECT_LIVE_MAX 4096
#define DAY_MS 86400000LL

struct delivery_track {
    char name[128];
    int64_t since;          /* first failure of the current run; 0: ok */
    bool raised;            /* delivery.failing raised for this run */
};

/* "kind key" strings: what a round found, or what this node raised. */
struct found {
    char (*keys)[300];
    size_t n, cap;
};

struct integrity_report {
    char what[16], id[256], problem[ERROR_MSG_MAX];
};

static struct {
    pthread_mutex_t mu;
    struct delivery_track track[DETECT_TRACK_MAX];
    size_t ntrack;
    struct integrity_report queue[DETECT_QUEUE_MAX];
    size_t nqueue;
    int64_t dropped;
    struct found mine;          /* per-node alerts this node may resolve:
                                   its own paths' and those this run raised
                                   (the detector thread's) */
    bool seeded;                /* its own paths are in mine */
} det_g = { .mu = PTHREAD_MUTEX_INITIALIZER };

void detect_reset(void)
{
    pthread_mutex_lock(&det_g.mu);
    det_g.ntrack = 0;
    det_g.nqueue = 0;
    free(det_g.mine.keys);
    memset(&det_g.mine, 0, sizeof(det_g.mine));
    det_g.seeded = false;
    pthread_mutex_unlock(&det_g.mu);
}

/* ---- the audit trail's entries ---------------------------------------------- */

/* Audit actions that change the configuration (config.change, info). */
static const char *const CONFIG_ACTIONS[] = {
    "flow.import", "user.create", "user.role", "user.disable", "user.enable",
    "user.delete", "user.password", "token.create", "token.revoke",
    "cert.import", "settings.change", "key.rotate", "key.retire",
    "conf.reload", "mfa.disable", "connector.hostkey.accept",
    "connector.oauth.authorize", "notify.credentials", NULL,
};

static bool detect_is_config(const char *action)
{
    for (size_t i = 0; CONFIG_ACTIONS[i]; i++)
        if (strcmp(CONFIG_ACTIONS[i], action) == 0)
            return true;
    return false;
}

void detect_audit_entry(struct store *st, const struct audit_event *e)
{
    char summary[512], details[1024];
    const char *target = e->target ? e->target : "-";
    if (alerts_wharf() == NULL || e->action == NULL)
        return;
    snprintf(details, sizeof(details), "by %s%s%s; %s %s", e->actor,
             e->address ? " from " : "", e->address ? e->address : "",
             target, e->detail ? e->detail : "");
    if (strcmp(e->action, "ban") == 0) {
        snprintf(summary, sizeof(summary), "address %s banned after repeated "
                 "authentication failures", target);
        alert_raise_st(st, "auth.ban", target, ALERT_WARNING, summary,
                       e->detail);
    } else if (strcmp(e->action, "login.throttle") == 0) {
        snprintf(summary, sizeof(summary), "logins of user name %s locked "
                 "after repeated failed logins", target);
        alert_raise_st(st, "auth.locked", target, ALERT_WARNING, summary,
                       details);
    } else if (detect_is_config(e->action)) {
        snprintf(summary, sizeof(summary), "configuration changed: %s",
                 e->action);
        alert_raise_st(st, "config.change", e->action, ALERT_INFO, summary,
                       details);
    }
}

/* ---- integrity failures ------------------------------------------------------- */

void detect_integrity(const char *what, const char *id, const char *problem)
{
    if (alerts_wharf() == NULL)
        return;
    pthread_mutex_lock(&det_g.mu);
    if (det_g.nqueue < DETECT_QUEUE_MAX) {
        struct integrity_report *r = &det_g.queue[det_g.nqueue++];
        snprintf(r->what, sizeof(r->what), "%s", what);
        snprintf(r->id, sizeof(r->id), "%s", id ? id : "-");
        snprintf(r->problem, sizeof(r->problem), "%s", problem ? problem : "");
    } else {
        det_g.dropped++;
    }
    pthread_mutex_unlock(&det_g.mu);
    alerts_wake();
}

void detect_flush(struct store *st)
{
    struct integrity_report q[DETECT_QUEUE_MAX];
    pthread_mutex_lock(&det_g.mu);
    size_t n = det_g.nqueue;
    int64_t dropped = det_g.dropped;
    memcpy(q, det_g.queue, n * sizeof(q[0]));
    det_g.nqueue = 0;
    det_g.dropped = 0;
    pthread_mutex_unlock(&det_g.mu);
    if (dropped)
        log_error("ALERT: %lld more integrity failure(s) not recorded "
                  "separately (too many at once)", (long long)dropped);
    for (size_t i = 0; i < n; i++) {
        char summary[512];
        bool payload = strcmp(q[i].what, "payload") == 0;
        if (payload)
            snprintf(summary, sizeof(summary), "the payload of message %s "
                     "failed its integrity check", q[i].id);
        else
            snprintf(summary, sizeof(summary), "a sealed value (%s) failed "
                     "its integrity check", q[i].id);
        alert_raise_st(st, payload ? "integrity.payload" : "integrity.sealed",
                       q[i].id, ALERT_CRITICAL, summary, q[i].problem);
    }
}

/* ---- hops ------------------------------------------------------------------------ */

static struct delivery_track *track_find(const char *name, bool add)
{
    for (size_t i = 0; i < det_g.ntrack; i++)
        if (strcmp(det_g.track[i].name, name) == 0)
            return &det_g.track[i];
    if (!add || det_g.ntrack == DETECT_TRACK_MAX)
        return NULL;
    struct delivery_track *t = &det_g.track[det_g.ntrack++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    return t;
}

void detect_hop(struct store *st, const char *connector, enum detect_hop what,
                const char *msgid, const char *error)
{
    bool clear = false;
    if (what == DETECT_HOP_WAIT || connector == NULL)
        return;
    pthread_mutex_lock(&det_g.mu);
    struct delivery_track *t = track_find(connector, false);
    bool fresh = t == NULL;     /* first outcome of this run: an alert of an
                                   earlier run may still be live */
    if (t == NULL)
        t = track_find(connector, true);
    if (t && what == DETECT_HOP_SENT) {
        clear = fresh || t->since != 0;
        t->since = 0;
        t->raised = false;
    } else if (t && t->since == 0) {
        t->since = time_now_ms();
    }
    pthread_mutex_unlock(&det_g.mu);
    if (clear)
        alert_clear_st(st, "delivery.failing", connector);
    if (what == DETECT_HOP_PARKED) {
        char summary[512], details[1200];
        snprintf(summary, sizeof(summary), "messages parked as failed at %s "
                 "(resend them when the cause is fixed)", connector);
        snprintf(details, sizeof(details), "last: message %s: %s",
                 msgid ? msgid : "-", error ? error : "");
        alert_raise_st(st, "message.failed", connector, ALERT_WARNING,
                       summary, details);
    }
}

/* ---- audit verify ---------------------------------------------------------------- */

void detect_audit_result(struct store *st, int rc, const struct audit_report *r)
{
    if (rc == 0) {
        alert_clear_st(st, "audit.broken", "audit");
    } else if (rc > 0) {
        char summary[700];
        snprintf(summary, sizeof(summary), "the audit trail is broken: %s",
                 r->problem);
        alert_raise_st(st, "audit.broken", "audit", ALERT_CRITICAL, summary,
                       "`wharf audit verify` names the first entry where it "
                       "breaks; keep the data dir as it is for the "
                       "investigation");
    }
}

/* ---- the periodic rules ---------------------------------------------------------- */

/* What a round found (struct found, above), by kind and key, to resolve
 * live alerts of the periodic kinds that were not found again. */

static void found_add(struct found *f, const char *kind, const char *key)
{
    if (f->n == f->cap) {
        if (f->cap >= DETECT_LIVE_MAX)
            return;
        size_t cap = f->cap ? 2 * f->cap : 32;
        void *p = realloc(f->keys, cap * sizeof(*f->keys));
        if (p == NULL)
            return;
        f->keys = p;
        f->cap = cap;
    }
    snprintf(f->keys[f->n++], sizeof(f->keys[0]), "%s %s", kind, key);
}

static bool found_has(const struct found *f, const char *kind,
                      const char *key)
{
    char k[300];
    snprintf(k, sizeof(k), "%s %s", kind, key);
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->keys[i], k) == 0)
            return true;
    return false;
}

static void found_drop(struct found *f, const char *kind, const char *key)
{
    char k[300];
    snprintf(k, sizeof(k), "%s %s", kind, key);
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->keys[i], k) == 0) {
            memmove(f->keys[i], f->keys[f->n - 1], sizeof(f->keys[0]));
            f->n--;
            return;
        }
}

/* A condition over the cluster's shared rows (a stored certificate), not
 * over one node's own disk, listeners or polls. */
static bool detect_cluster_key(const char *kind, const char *key)
{
    return strcmp(kind, "cert.expiry") == 0 && strncmp(key, "cert:", 5) == 0;
}

static void detect_sources(struct store *st, const struct security_conf *c,
                           int64_t now, struct found *f)
{
    json_t *state = health_state();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(state, "failing"), i, v) {
        const char *name = json_string_value(json_object_get(v, "connector"));
        int64_t since = json_integer_value(json_object_get(v, "since"));
        if (name == NULL)
            continue;
        found_add(f, "connector.failing", name);    /* keep it while failing */
        if (now - since < c->connector_failing_ms)
            continue;
        char summary[512], iso[32];
        time_iso(since, iso, sizeof(iso));
        snprintf(summary, sizeof(summary), "source %s: every poll has failed "
                 "for %lld min (the log says why)", name,
                 (long long)((now - since) / 60000));
        alert_raise_st(st, "connector.failing", name, ALERT_WARNING, summary,
                       iso);
    }
    json_array_foreach(json_object_get(state, "left_out"), i, v) {
        const char *name = json_string_value(v);
        if (name == NULL)
            continue;
        char summary[512];
        snprintf(summary, sizeof(summary), "connector %s could not be opened "
                 "and is left out (the log says why)", name);
        found_add(f, "connector.left_out", name);
        alert_raise_st(st, "connector.left_out", name, ALERT_WARNING, summary,
                       NULL);
    }
    json_decref(state);
}

static void detect_deliveries(struct store *st, const struct security_conf *c,
                              int64_t now)
{
    char due[16][128];
    int64_t since[16];
    size_t n = 0;
    pthread_mutex_lock(&det_g.mu);
    for (size_t i = 0; i < det_g.ntrack && n < 16; i++) {
        struct delivery_track *t = &det_g.track[i];
        if (t->since == 0 || t->raised ||
            now - t->since < c->connector_failing_ms)
            continue;
        t->raised = true;
        snprintf(due[n], sizeof(due[n]), "%s", t->name);
        since[n++] = t->since;
    }
    pthread_mutex_unlock(&det_g.mu);
    for (size_t i = 0; i < n; i++) {
        char summary[512], iso[32];
        time_iso(since[i], iso, sizeof(iso));
        snprintf(summary, sizeof(summary), "destination %s: every delivery "
                 "has failed for %lld min (the messages' history says why)",
                 due[i], (long long)((now - since[i]) / 60000));
        alert_raise_st(st, "delivery.failing", due[i], ALERT_WARNING,
                       summary, iso);
    }
}

static void detect_disk(struct wharf *w, struct store *st,
                        const struct security_conf *c, struct found *f)
{
    struct statvfs sv;
    if (c->disk_free_percent <= 0 || statvfs(w->dir, &sv) != 0 ||
        sv.f_blocks == 0)
        return;
    double pct = 100.0 * (double)sv.f_bavail / (double)sv.f_blocks;
    if (pct >= c->disk_free_percent)
        return;
    unsigned long long free_mib = (unsigned long long)sv.f_bavail *
                                  sv.f_frsize / (1024 * 1024);
    unsigned long long all_mib = (unsigned long long)sv.f_blocks *
                                 sv.f_frsize / (1024 * 1024);
    char summary[600], details[256];
    snprintf(summary, sizeof(summary), "the data dir %s has %.1f%% free "
             "space (alert_disk_free_percent %d)", w->dir, pct,
             c->disk_free_percent);
    snprintf(details, sizeof(details), "%llu MiB free of %llu MiB", free_mib,
             all_mib);
    found_add(f, "disk.low", w->dir);
    alert_raise_st(st, "disk.low", w->dir, pct < c->disk_free_percent / 2.0
                   ? ALERT_CRITICAL : ALERT_WARNING, summary, details);
}

/* The step of c->cert_days a certificate ending at not_after is in at now:
 * 0 expired, 1..n the step (1 = the smallest), -1 none yet. */
static int cert_step(const struct security_conf *c, int64_t not_after,
                     int64_t now)
{
    if (not_after <= now)
        return 0;
    int step = -1;
    for (int i = 0; i < c->ncert_days; i++)
        if (not_after - now <= c->cert_days[i] * DAY_MS)
            step = c->ncert_days - i;
    return step;
}

static void cert_alert(struct store *st, const struct security_conf *c,
                       const char *key, const char *what, int64_t not_after,
                       int64_t now, struct found *f)
{
    int step = cert_step(c, not_after, now);
    if (step < 0)
        return;
    char summary[700], iso[32];
    time_iso(not_after, iso, sizeof(iso));
    enum alert_level lv = step <= 1 ? ALERT_CRITICAL
                          : step == c->ncert_days ? ALERT_INFO : ALERT_WARNING;
    if (step == 0)
        snprintf(summary, sizeof(summary), "%s expired on %s", what, iso);
    else
        snprintf(summary, sizeof(summary), "%s expires within %d day%s "
                 "(on %s)", what, c->cert_days[c->ncert_days - step],
                 c->cert_days[c->ncert_days - step] == 1 ? "" : "s", iso);
    char details[128];
    snprintf(details, sizeof(details), "%lld day(s) left",
             (long long)((not_after - now) / DAY_MS));
    found_add(f, "cert.expiry", key);
    alert_raise_st(st, "cert.expiry", key, lv, summary, details);
}

/* A certificate another one of the same owner takes over before it ends
 * (a rollover) is no concern. */
static bool cert_superseded(const struct store_cert *all, size_t n,
                            const struct store_cert *c)
{
    for (size_t i = 0; i < n; i++)
        if (&all[i] != c && strcmp(all[i].owner, c->owner) == 0 &&
            all[i].not_after > c->not_after &&
            all[i].not_before <= c->not_after)
            return true;
    return false;
}

static void detect_stored_certs(struct store *st,
                                const struct security_conf *c, int64_t now,
                                struct found *f)
{
    struct store_cert *certs = NULL;
    size_t n = 0;
    struct error err = {0};
    if (store_certs_list(st, NULL, 0, &certs, &n, &err) < 0) {
        log_repeat(LOG_WARNING, -1, NULL, "detect:certs", "certificate "
                   "expiry check: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (cert_superseded(certs, n, &certs[i]))
            continue;
        char key[80], what[700];
        snprintf(key, sizeof(key), "cert:%.64s", certs[i].id);
        snprintf(what, sizeof(what), "the certificate %s of %s%s",
                 certs[i].subject, certs[i].owner[0] ? "partner " : "",
                 certs[i].owner[0] ? certs[i].owner : "the local AS2 profile");
        cert_alert(st, c, key, what, certs[i].not_after, now, f);
    }
    store_certs_free(certs, n);
}

/* notAfter of the PEM certificate at path (ms), or -1. */
static int64_t cert_file_end(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    struct tm tm;
    int64_t end = -1;
    if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        end = (int64_t)timegm(&tm) * 1000;
    X509_free(x);
    BIO_free(b);
    return end;
}

/* The alert key of the listeners' certificate file into key[4300]; -1
 * when its path does not fit. */
static int listener_cert_key(struct wharf *w, char *path, size_t n,
                             char key[4300])
{
    if (w->conf.tls_cert[0] == '/')
        snprintf(path, n, "%s", w->conf.tls_cert);
    else if (wharf_path(w, w->conf.tls_cert, path, n) < 0)
        return -1;
    snprintf(key, 4300, "tls:%s", path);
    return 0;
}

static void detect_listener_cert(struct wharf *w, struct store *st,
                                 const struct security_conf *c, int64_t now,
                                 struct found *f)
{
    char path[4200], key[4300], what[4400];
    if (listener_cert_key(w, path, sizeof(path), key) < 0)
        return;
    int64_t end = cert_file_end(path);
    if (end < 0)
        return;
    snprintf(what, sizeof(what), "the listeners' TLS certificate %s", path);
    cert_alert(st, c, key, what, end, now, f);
}

/* May this node resolve the live periodic alert kind/key that this
 * round did not find? Cluster-wide ones: when it leads the checks.
 * Per-node ones: on one node always; in a cluster when it raised it. */
static bool detect_may_resolve(const char *kind, const char *key, bool lead,
                               bool shared)
{
    if (detect_cluster_key(kind, key))
        return lead;
    return !shared || found_has(&det_g.mine, kind, key);
}

/* The per-node alerts named after this node's own paths (its data dir's
 * disk, its listeners' certificate file) are its own even when an earlier
 * run raised them: it may resolve them after a restart. */
static void detect_seed_own(struct wharf *w)
{
    char path[4200], key[4300];
    if (det_g.seeded)
        return;
    det_g.seeded = true;
    found_add(&det_g.mine, "disk.low", w->dir);
    if (listener_cert_key(w, path, sizeof(path), key) == 0)
        found_add(&det_g.mine, "cert.expiry", key);
}

/* Remember the per-node alerts this round found (the ones this node may
 * resolve later in a cluster). */
static void detect_remember(const struct found *f)
{
    for (size_t i = 0; i < f->n; i++) {
        char kind[300], *sp;
        snprintf(kind, sizeof(kind), "%s", f->keys[i]);
        if ((sp = strchr(kind, ' ')) == NULL)
            continue;
        *sp = '\0';
        if (!detect_cluster_key(kind, sp + 1) &&
            !found_has(&det_g.mine, kind, sp + 1))
            found_add(&det_g.mine, kind, sp + 1);
    }
}

/* Resolve live alerts of the periodic kinds whose condition this round
 * did not find again (those this node may: detect_may_resolve). */
static void detect_resolve(struct store *st, const struct found *f,
                           bool lead, bool shared)
{
    static const char *const PERIODIC[] = { "connector.failing",
        "connector.left_out", "disk.low", "cert.expiry", NULL };
    struct store_alert *live = NULL;
    size_t n = 0;
    struct error err = {0};
    if (store_alert_list(st, "live", 0, DETECT_LIVE_MAX, &live, &n,
                         &err) < 0) {
        log_repeat(LOG_WARNING, -1, NULL, "detect:live", "alerts: %s",
                   err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; PERIODIC[k]; k++)
            if (live[i].kind && live[i].key &&
                strcmp(live[i].kind, PERIODIC[k]) == 0 &&
                !found_has(f, live[i].kind, live[i].key) &&
                detect_may_resolve(live[i].kind, live[i].key, lead,
                                   shared)) {
                alert_clear_st(st, live[i].kind, live[i].key);
                found_drop(&det_g.mine, live[i].kind, live[i].key);
            }
    store_alerts_free(live, n);
    detect_remember(f);
}

void detect_run(struct wharf *w, struct store *st,
                const struct security_conf *c, int64_t now_ms, bool audit,
                bool lead)
{
    struct found f = {0};
    detect_sources(st, c, now_ms, &f);
    detect_deliveries(st, c, now_ms);
    detect_disk(w, st, c, &f);
    if (lead)
        detect_stored_certs(st, c, now_ms, &f);
    detect_listener_cert(w, st, c, now_ms, &f);
    detect_seed_own(w);
    detect_resolve(st, &f, lead, wharf_store_shared(w));
    free(f.keys);
    if (audit && lead) {
        struct audit_report r;
        struct error err = {0};
        memset(&r, 0, sizeof(r));
        int rc = audit_verify(st, w->vault, &r, &err);
        if (rc < 0)
            log_repeat(LOG_WARNING, -1, NULL, "detect:audit", "periodic audit "
                       "verify could not run: %s", err.msg);
        else
            detect_audit_result(st, rc, &r);
    }
}
