/*
 * alerts.c - raising and clearing alerts (alerts.h): the folding rule of
 * each kind, the log line of each state change, the process's attached
 * data dir, and the hooks that let the audit trail and the vault raise
 * alerts without knowing this module.
 *
 * Owns the table of known kinds (whether a kind is a condition that
 * clears, so repeats fold into it even once acknowledged, and whether a
 * new summary is a new state, as for the expiry steps of a certificate)
 * and the attached `struct wharf *` (set once, before threads). A kind
 * not in the table is an event.
 *
 * Must never: fail or block its caller beyond one write transaction; log
 * a line per repeat; put a secret in an alert (every text passes
 * log_redact and is cut to one line); write from a process other than
 * the one that attached (a forked child such as the key process has no
 * business with the database).
 */
#include "security/alerts.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/wharf.h"
#include "security/detectors.h"
#include "store/security_store.h"
#include "util/id.h"
#include "util/log.h"
#include "vault/vault.h"

#define ALERT_KEY_MAX 256
#define ALERT_SUMMARY_MAX 512
#define ALERT_DETAILS_MAX 2048

struct alert_kind {
    const char *kind;
    bool clears;                /* a condition: alert_clear ends it */
    bool summary_is_state;      /* a new summary is a state change */
};

/* Every kind Wharf raises (docs/operations.md, "Alert rules"). */
static const struct alert_kind KINDS[] = {
    { "auth.ban", false, false },
    { "auth.locked", false, false },
    { "connector.failing", true, false },
    { "delivery.failing", true, false },
    { "connector.left_out", true, false },
    { "as2.mdn", true, false },
    { "as2.mdn_missing", true, false },
    { "as2.refused", false, false },
    { "as2.mdn_out", false, false },
    { "as2.mdn_plain", false, false },
    { "partner.unknown_route", false, false },
    { "integrity.payload", false, false },
    { "integrity.sealed", false, false },
    { "audit.broken", true, false },
    { "cert.expiry", true, true },
    { "disk.low", true, false },
    { "message.failed", false, false },
    { "config.change", false, false },
};

typedef void (*alerts_wake_fn)(void);

/* w, pid and logging are written before threads start (attach); wake is
 * set and cleared by serve while other threads raise alerts. */
static struct {
    struct wharf *w;
    pid_t pid;
    _Atomic(alerts_wake_fn) wake;
    bool logging;
} alerts_g;

static const char *const LEVELS[] = { "info", "warning", "critical" };

const char *alert_level_name(enum alert_level l)
{
    return (unsigned)l <= ALERT_CRITICAL ? LEVELS[l] : NULL;
}

int alert_level_parse(const char *name, enum alert_level *out)
{
    for (int i = 0; name && i <= ALERT_CRITICAL; i++)
        if (strcmp(name, LEVELS[i]) == 0) {
            *out = (enum alert_level)i;
            return 0;
        }
    return -1;
}

static const struct alert_kind *alert_kind_find(const char *kind)
{
    for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++)
        if (strcmp(KINDS[i].kind, kind) == 0)
            return &KINDS[i];
    return NULL;
}

/* ---- the attached data dir --------------------------------------------------- */

void alerts_attach(struct wharf *w)
{
    alerts_g.w = w;
    alerts_g.pid = getpid();
    audit_set_observer(w ? detect_audit_entry : NULL);
    vault_set_integrity_hook(w ? detect_integrity : NULL);
}

struct wharf *alerts_wharf(void)
{
    return alerts_g.w && alerts_g.pid == getpid() ? alerts_g.w : NULL;
}

void alerts_set_logging(bool on)
{
    alerts_g.logging = on;
}

bool alerts_logging(void)
{
    return alerts_g.logging;
}

void alerts_set_wake(void (*fn)(void))
{
    atomic_store(&alerts_g.wake, fn);
}

void alerts_wake(void)
{
    alerts_wake_fn fn = atomic_load(&alerts_g.wake);
    if (fn)
        fn();
}

/* ---- texts --------------------------------------------------------------------- */

/* s cut to one line of at most n - 1 bytes, credentials masked. */
static void alert_text(const char *s, char *out, size_t n)
{
    snprintf(out, n, "%s", s ? s : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    log_redact(out);
}

static enum log_level alert_log_level(const char *level)
{
    if (level && strcmp(level, "critical") == 0)
        return LOG_ERROR;
    if (level && strcmp(level, "warning") == 0)
        return LOG_WARNING;
    return LOG_INFO;
}

/* ---- raise and clear ---------------------------------------------------------- */

void alert_raise_st(struct store *st, const char *kind, const char *key,
                    enum alert_level level, const char *summary,
                    const char *details)
{
    char k[ALERT_KEY_MAX], s[ALERT_SUMMARY_MAX], d[ALERT_DETAILS_MAX];
    struct error err = {0};
    alert_text(key, k, sizeof(k));
    alert_text(summary, s, sizeof(s));
    alert_text(details, d, sizeof(d));
    const struct alert_kind *ak = alert_kind_find(kind);
    const char *lv = alert_level_name(level) ? alert_level_name(level)
                                             : "warning";
    struct store_alert_raise r = {
        .kind = kind, .key = k, .level = lv, .summary = s,
        .details = d[0] ? d : NULL, .fold_acked = ak && ak->clears,
        .summary_is_state = ak && ak->summary_is_state, .at = time_now_ms(),
    };
    struct store_alert a;
    int rc = store_alert_raise(st, &r, &a, &err);
    if (rc < 0)
        log_error("ALERT: %s (%s %s; not recorded: %s)", s, kind, k, err.msg);
    else if (rc == STORE_ALERT_OPENED && alerts_g.logging)
        log_write(alert_log_level(lv), -1, NULL, NULL, "ALERT: %s (alert %lld "
                  "opened, %s, %s %s)", s, (long long)a.id, lv, kind, k);
    else if (rc == STORE_ALERT_CHANGED && alerts_g.logging)
        log_write(alert_log_level(lv), -1, NULL, NULL, "ALERT: %s (alert %lld "
                  "now %s after %lld, %s %s)", s, (long long)a.id, lv,
                  (long long)a.count, kind, k);
    if (rc == STORE_ALERT_OPENED || rc == STORE_ALERT_CHANGED)
        alerts_wake();
    store_alert_clear(&a);
}

void alert_clear_st(struct store *st, const char *kind, const char *key)
{
    char k[ALERT_KEY_MAX];
    struct error err = {0};
    struct store_alert a;
    alert_text(key, k, sizeof(k));
    int n = store_alert_resolve(st, kind, k, "the condition cleared",
                                time_now_ms(), &a, &err);
    if (n < 0)
        log_error("alert %s %s: cannot record that it cleared: %s", kind, k,
                  err.msg);
    else if (n > 0) {
        if (alerts_g.logging)
            log_info("ALERT resolved: %s (alert %lld, %s %s, seen %lld time%s)",
                 a.summary ? a.summary : "", (long long)a.id, kind, k,
                 (long long)a.count, a.count == 1 ? "" : "s");
        alerts_wake();
    }
    store_alert_clear(&a);
}

/* The calling thread's connection to the attached data dir, or NULL
 * (logged once per kind and key). */
static struct store *alert_store(const char *kind, const char *key,
                                 const char *summary)
{
    struct wharf *w = alerts_wharf();
    struct error err = {0};
    struct store *st = w ? wharf_store(w, &err) : NULL;
    if (st == NULL) {
        char rk[ALERT_KEY_MAX + 64];
        snprintf(rk, sizeof(rk), "alert:%s:%s", kind, key ? key : "");
        log_repeat(LOG_WARNING, -1, NULL, rk, "ALERT: %s (%s %s; not "
                   "recorded: %s)", summary ? summary : "", kind,
                   key ? key : "", w ? err.msg : "no data dir open");
    }
    return st;
}

void alert_raise(const char *kind, const char *key, enum alert_level level,
                 const char *summary, const char *details)
{
    struct store *st = alert_store(kind, key, summary);
    if (st != NULL)
        alert_raise_st(st, kind, key, level, summary, details);
}

void alert_clear(const char *kind, const char *key)
{
    struct wharf *w = alerts_wharf();
    struct error err = {0};
    struct store *st = w ? wharf_store(w, &err) : NULL;
    if (st != NULL)
        alert_clear_st(st, kind, key);
}
