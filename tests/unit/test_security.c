/*
 * test_security.c - alerts and the incident ladder (R19) below the CLI and
 * the API: repeats fold into one alert with a count and a last-seen time;
 * a new level is a state change, a repeat is not; a clear resolves; an
 * event folds only while open, a condition also once acknowledged; the
 * ladder's rules (ack only an open alert, escalation once, tiers only up,
 * an incident needs a severity, a breach starts the 72-hour clock, a
 * closed incident does not change) with one timeline entry and one audit
 * entry per transition; the wharf.conf keys of alerts and notifications.
 */
#include "testutil.h"

#include <pthread.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/wharf.h"
#include "security/alerts.h"
#include "security/detectors.h"
#include "security/incidents.h"
#include "net/syslog.h"
#include "security/security_conf.h"
#include "store/audit_store.h"
#include "store/security_store.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/vault.h"

struct fx {
    char dir[512], db[600];     /* db: a file, or a postgresql:// URL */
    char pgname[64];            /* the PostgreSQL database, "" on SQLite */
    struct store *st;
};

/* The group running: 0 SQLite, 1 PostgreSQL (the server of WHARF_TEST_PG,
 * which scripts/run-unit.sh starts; without it that group fails). */
static int g_pg;

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct error err = {0};
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/wharf.db", f->dir);
    if (g_pg)
        test_pg_fresh(f->db, sizeof(f->db), f->pgname);
    f->st = store_open(f->db, &err);
    if (f->st == NULL)
        fail_msg("store_open: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->st);
    if (f->pgname[0])
        test_pg_drop(f->pgname);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static struct store_alert get_alert(struct fx *f, int64_t id)
{
    struct store_alert a;
    struct error err = {0};
    assert_int_equal(store_alert_get(f->st, id, &a, &err), 1);
    return a;
}

/* The newest alert's id (0 when none). */
static int64_t newest(struct fx *f)
{
    struct store_alert *a = NULL;
    size_t n = 0;
    struct error err = {0};
    assert_int_equal(store_alert_list(f->st, "all", 0, 1, &a, &n, &err), 0);
    int64_t id = n ? a[0].id : 0;
    store_alerts_free(a, n);
    return id;
}

static size_t count_alerts_in(struct store *st, const char *kind)
{
    struct store_alert *a = NULL;
    size_t n = 0, k = 0;
    struct error err = {0};
    assert_int_equal(store_alert_list(st, "all", 0, 1000, &a, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        k += strcmp(a[i].kind, kind) == 0;
    store_alerts_free(a, n);
    return k;
}

static size_t count_alerts(struct fx *f, const char *state)
{
    struct store_alert *a = NULL;
    size_t n = 0;
    struct error err = {0};
    assert_int_equal(store_alert_list(f->st, state, 0, 1000, &a, &n, &err),
                     0);
    store_alerts_free(a, n);
    return n;
}

/* "action,action,..." of the timeline of alert or incident. */
static void timeline(struct fx *f, int64_t alert, int64_t incident,
                     char *out, size_t n)
{
    struct store_sec_event *e = NULL;
    size_t k = 0;
    struct error err = {0};
    assert_int_equal(store_sec_events_of(f->st, alert, incident, &e, &k,
                                         &err), 0);
    out[0] = '\0';
    for (size_t i = 0; i < k; i++)
        snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? "," : "",
                 e[i].action);
    store_sec_events_free(e, k);
}

/* Entries of the audit trail whose action is action (and whose detail
 * holds detail_has, unless NULL). */
static int audited(struct fx *f, const char *action, const char *detail_has)
{
    struct store_audit_row *rows = NULL;
    size_t n = 0;
    struct error err = {0};
    int found = 0;
    if (store_audit_list(f->st, 0, 1000, &rows, &n, &err) < 0)
        fail_msg("store_audit_list: %s", err.msg);
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].action, action) == 0 &&
            (detail_has == NULL ||
             (rows[i].detail && strstr(rows[i].detail, detail_has))))
            found++;
    store_audit_rows_free(rows, n);
    return found;
}

#define ASSERT_AUDITED(f, action, detail, want) \
    assert_int_equal(audited(f, action, detail), want)

/* ---- folding ------------------------------------------------------------- */

static void test_r19_repeats_fold_into_one_alert(void **state)
{
    struct fx *f = *state;
    char tl[256];
    for (int i = 0; i < 5; i++)
        alert_raise_st(f->st, "disk.low", "/data", ALERT_WARNING,
                       "the data dir has 4% free", "try 1");
    assert_int_equal(count_alerts(f, "all"), 1);
    struct store_alert a = get_alert(f, newest(f));
    assert_int_equal(a.count, 5);
    assert_string_equal(a.state, "open");
    assert_true(a.last_at >= a.first_at);
    timeline(f, a.id, 0, tl, sizeof(tl));
    assert_string_equal(tl, "opened");      /* a repeat is no state change */
    int64_t id = a.id;
    store_alert_clear(&a);

    /* a new level is one */
    alert_raise_st(f->st, "disk.low", "/data", ALERT_CRITICAL,
                   "the data dir has 1% free", NULL);
    a = get_alert(f, id);
    assert_int_equal(a.count, 6);
    assert_string_equal(a.level, "critical");
    assert_string_equal(a.summary, "the data dir has 1% free");
    store_alert_clear(&a);
    timeline(f, id, 0, tl, sizeof(tl));
    assert_string_equal(tl, "opened,changed");

    /* another key is another alert */
    alert_raise_st(f->st, "disk.low", "/other", ALERT_WARNING, "x", NULL);
    assert_int_equal(count_alerts(f, "all"), 2);
}

static void test_r19_clear_resolves_and_a_new_raise_opens_again(void **state)
{
    struct fx *f = *state;
    char tl[256];
    alert_raise_st(f->st, "connector.failing", "inbox", ALERT_WARNING,
                   "source inbox: every poll has failed", NULL);
    int64_t id = newest(f);
    alert_clear_st(f->st, "connector.failing", "inbox");
    struct store_alert a = get_alert(f, id);
    assert_string_equal(a.state, "resolved");
    assert_true(a.resolved_at > 0);
    store_alert_clear(&a);
    timeline(f, id, 0, tl, sizeof(tl));
    assert_string_equal(tl, "opened,resolved");
    alert_clear_st(f->st, "connector.failing", "inbox");    /* nothing live */
    timeline(f, id, 0, tl, sizeof(tl));
    assert_string_equal(tl, "opened,resolved");
    alert_raise_st(f->st, "connector.failing", "inbox", ALERT_WARNING,
                   "source inbox: every poll has failed", NULL);
    assert_true(newest(f) > id);
    assert_int_equal(count_alerts(f, "live"), 1);
}

static void test_r19_events_fold_only_while_open(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    json_t *doc = NULL;
    struct sec_actor who = { "user:olga", "127.0.0.1" };
    /* an event (a ban): acknowledged means handled; the next is new */
    alert_raise_st(f->st, "auth.ban", "10.0.0.9", ALERT_WARNING, "banned",
                   NULL);
    int64_t ban = newest(f);
    assert_int_equal(sec_alert_ack(f->st, NULL, &who, ban, "known scanner",
                                   &doc, &err), SEC_OK);
    json_decref(doc);
    alert_raise_st(f->st, "auth.ban", "10.0.0.9", ALERT_WARNING, "banned",
                   NULL);
    assert_true(newest(f) > ban);
    /* a condition (disk low): it folds until it clears */
    alert_raise_st(f->st, "disk.low", "/d", ALERT_WARNING, "low", NULL);
    int64_t disk = newest(f);
    assert_int_equal(sec_alert_ack(f->st, NULL, &who, disk, "cleaning up",
                                   &doc, &err), SEC_OK);
    json_decref(doc);
    alert_raise_st(f->st, "disk.low", "/d", ALERT_WARNING, "low", NULL);
    assert_int_equal(newest(f), disk);
    struct store_alert a = get_alert(f, disk);
    assert_int_equal(a.count, 2);
    assert_string_equal(a.state, "acknowledged");
    store_alert_clear(&a);
}

static void test_r19_alert_texts_are_one_line_and_redacted(void **state)
{
    struct fx *f = *state;
    alert_raise_st(f->st, "as2.mdn", "a", ALERT_WARNING,
                   "post to https://bob:hunter2secret@partner/as2\nfailed",
                   "Authorization: Bearer abcdefsecrettoken");
    struct store_alert a = get_alert(f, newest(f));
    assert_null(strchr(a.summary, '\n'));
    assert_null(strstr(a.summary, "hunter2secret"));
    assert_null(strstr(a.details, "abcdefsecrettoken"));
    store_alert_clear(&a);
}

/* ---- the ladder -------------------------------------------------------------- */

static void test_r19_ack_only_an_open_alert_with_a_reason(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    json_t *doc = NULL;
    struct sec_actor who = { "user:olga", "127.0.0.1" };
    alert_raise_st(f->st, "message.failed", "out", ALERT_WARNING, "parked",
                   NULL);
    int64_t id = newest(f);
    assert_int_equal(sec_alert_ack(f->st, NULL, &who, id, "", &doc, &err),
                     SEC_INVALID);
    assert_int_equal(sec_alert_ack(f->st, NULL, &who, id + 100, "x", &doc,
                                   &err), SEC_NOT_FOUND);
    assert_int_equal(sec_alert_ack(f->st, NULL, &who, id, "resending",
                                   &doc, &err), SEC_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")),
                        "acknowledged");
    json_decref(doc);
    assert_int_equal(sec_alert_ack(f->st, NULL, &who, id, "again", &doc,
                                   &err), SEC_CONFLICT);
    ASSERT_AUDITED(f, "alert.ack", "resending", 1);
}

static int64_t escalate(struct fx *f, int64_t alert, int64_t into, int want)
{
    struct error err = {0};
    json_t *doc = NULL;
    struct sec_actor who = { "user:ada", NULL };
    struct sec_escalation e = { "ada", "looks like tampering", into };
    int rc = sec_alert_escalate(f->st, NULL, &who, alert, &e, &doc, &err);
    assert_int_equal(rc, want);
    int64_t id = rc == SEC_OK ? json_integer_value(json_object_get(doc, "id"))
                              : 0;
    json_decref(doc);
    return id;
}

static int update(struct fx *f, int64_t id,
                  const struct sec_incident_change *ch, json_t **doc)
{
    struct error err = {0};
    struct sec_actor who = { "user:ada", NULL };
    *doc = NULL;
    return sec_incident_update(f->st, NULL, &who, id, ch, doc, &err);
}

static void test_r19_ladder_investigation_incident_breach(void **state)
{
    struct fx *f = *state;
    char tl[512];
    json_t *doc;
    alert_raise_st(f->st, "integrity.payload", "m1", ALERT_CRITICAL,
                   "the payload of message m1 failed its integrity check",
                   NULL);
    int64_t alert = newest(f);
    int64_t inc = escalate(f, alert, 0, SEC_OK);
    assert_true(inc > 0);
    escalate(f, alert, 0, SEC_CONFLICT);        /* once only */
    struct store_alert a = get_alert(f, alert);
    assert_string_equal(a.state, "escalated");
    assert_int_equal(a.incident_id, inc);
    store_alert_clear(&a);
    struct store_incident i;
    struct error err = {0};
    assert_int_equal(store_incident_get(f->st, inc, &i, &err), 1);
    assert_string_equal(i.tier, "investigation");
    assert_string_equal(i.owner, "ada");
    store_incident_clear(&i);

    /* an incident needs a severity and a note */
    struct sec_incident_change ch = { .tier = "incident", .note = "real" };
    assert_int_equal(update(f, inc, &ch, &doc), SEC_INVALID);
    ch.note = NULL;
    ch.severity = "high";
    assert_int_equal(update(f, inc, &ch, &doc), SEC_INVALID);
    ch.note = "confirmed: the file was changed on disk";
    json_t *parts = json_pack("[s]", "acme");
    ch.partners = parts;
    assert_int_equal(update(f, inc, &ch, &doc), SEC_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "tier")),
                        "incident");
    assert_string_equal(json_string_value(json_array_get(
        json_object_get(doc, "partners"), 0)), "acme");
    assert_null(json_object_get(doc, "breach"));
    json_decref(doc);
    json_decref(parts);

    /* a breach: the clock starts, who to tell has a default */
    struct sec_incident_change br = { .tier = "breach",
                                      .note = "personal data left" };
    assert_int_equal(update(f, inc, &br, &doc), SEC_OK);
    json_t *clock = json_object_get(doc, "breach");
    assert_non_null(clock);
    assert_true(json_integer_value(json_object_get(clock, "hours_left"))
                >= 71);
    assert_non_null(strstr(json_string_value(json_object_get(clock,
                    "notify")), "supervisory authority"));
    json_decref(doc);
    /* tiers only go up */
    struct sec_incident_change down = { .tier = "incident", .note = "oops" };
    assert_int_equal(update(f, inc, &down, &doc), SEC_INVALID);

    struct sec_actor who = { "user:ada", NULL };
    assert_int_equal(sec_incident_close(f->st, NULL, &who, inc, "", &doc,
                                        &err), SEC_INVALID);
    assert_int_equal(sec_incident_close(f->st, NULL, &who, inc,
                                        "authority told, fixed", &doc, &err),
                     SEC_OK);
    json_decref(doc);
    struct sec_incident_change late = { .owner = "bob", .note = "late" };
    assert_int_equal(update(f, inc, &late, &doc), SEC_CONFLICT);

    timeline(f, 0, inc, tl, sizeof(tl));
    assert_string_equal(tl, "escalated,opened,escalated,escalated,closed");
    ASSERT_AUDITED(f, "alert.escalate", "looks like tampering", 1);
    ASSERT_AUDITED(f, "incident.update", "tier investigation -> incident",
                   1);
    ASSERT_AUDITED(f, "incident.update", "tier incident -> breach", 1);
    ASSERT_AUDITED(f, "incident.close", "authority told", 1);
}

static void test_r19_escalate_into_an_open_incident(void **state)
{
    struct fx *f = *state;
    alert_raise_st(f->st, "auth.ban", "10.1.1.1", ALERT_WARNING, "ban 1",
                   NULL);
    int64_t a1 = newest(f);
    alert_raise_st(f->st, "auth.ban", "10.1.1.2", ALERT_WARNING, "ban 2",
                   NULL);
    int64_t a2 = newest(f);
    int64_t inc = escalate(f, a1, 0, SEC_OK);
    assert_int_equal(escalate(f, a2, inc, SEC_OK), inc);
    escalate(f, a2 + 1000, inc, SEC_NOT_FOUND);
    alert_raise_st(f->st, "auth.ban", "10.1.1.3", ALERT_WARNING, "ban 3",
                   NULL);
    escalate(f, newest(f), inc + 1000, SEC_INVALID);    /* no incident */
    struct store_alert *of = NULL;
    size_t n = 0;
    struct error err = {0};
    assert_int_equal(store_alerts_of_incident(f->st, inc, &of, &n, &err), 0);
    assert_int_equal(n, 2);
    store_alerts_free(of, n);
}

/* ---- integrity failures of the vault ----------------------------------------- */

/* A sealed value changed in the database: the vault's hook (set by
 * alerts_attach) queues it, detect_flush writes one critical alert per
 * value, and a process that never attached is told nothing. */
static void test_r19_sealed_value_failing_integrity_raises_an_alert(
        void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    char data[700];
    snprintf(data, sizeof(data), "%s/data", f->dir);
    assert_int_equal(wharf_init(data, NULL, &err), 0);
    struct wharf *w = wharf_open(data, &err);
    assert_non_null(w);
    struct store *st = store_open(w->db_path, &err);
    assert_non_null(st);
    struct secret *plain = secret_from("hook-key-0123456789", 19);
    unsigned char *blob = NULL;
    size_t len = 0;
    assert_int_equal(vault_seal(w->vault, "notify:webhook", plain, &blob,
                                &len, &err), 0);
    blob[len - 1] ^= 0x01;                  /* the tag: tampered */

    assert_null(vault_unseal(w->vault, "notify:webhook", blob, len, &err));
    detect_flush(st);                       /* not attached: nothing */
    assert_int_equal(count_alerts_in(st, "integrity.sealed"), 0);

    alerts_attach(w);
    assert_null(vault_unseal(w->vault, "notify:webhook", blob, len, &err));
    assert_non_null(strstr(err.msg, "does not open"));
    blob[len - 1] ^= 0x01;                  /* intact again: no report */
    struct secret *back = vault_unseal(w->vault, "notify:webhook", blob, len,
                                       &err);
    assert_non_null(back);
    detect_flush(st);
    alerts_attach(NULL);
    assert_int_equal(count_alerts_in(st, "integrity.sealed"), 1);
    struct store_alert *a = NULL;
    size_t n = 0;
    assert_int_equal(store_alert_list(st, "all", 0, 10, &a, &n, &err), 0);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].kind, "integrity.sealed") == 0) {
            assert_string_equal(a[i].key, "notify:webhook");
            assert_string_equal(a[i].level, "critical");
            assert_null(strstr(a[i].details, "hook-key"));
            found = 1;
        }
    assert_true(found);
    store_alerts_free(a, n);
    secret_free(back);
    secret_free(plain);
    free(blob);
    store_close(st);
    wharf_close(w);
}

/* ---- R21: nodes sharing one database ------------------------------------------ */

enum { RACE_ROUNDS = 24 };

/* One node of a race: its own connection (store_open of db), the same
 * step in each round, both nodes let go at once by a barrier. */
struct node {
    const char *db;
    int no;
    pthread_barrier_t *go;
    int64_t ids[RACE_ROUNDS];       /* per round: what the step is on */
    int64_t expect[RACE_ROUNDS];    /* per round: updated_at read before */
    int rc[RACE_ROUNDS];            /* per round: the step's result */
    int64_t got[RACE_ROUNDS];       /* per round: the incident it made */
    char err[ERROR_MSG_MAX];
};

/* Each round: both nodes wait at the barrier, then step. A node whose
 * store failed keeps meeting the barrier (its rounds get -1), so the other
 * never waits for it forever. */
static void *raise_each(void *arg)
{
    struct node *nd = arg;
    struct error err = {0};
    struct store *st = store_open(nd->db, &err);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char key[32];
        snprintf(key, sizeof(key), "/data%d", i);
        struct store_alert_raise r = { "disk.low", key, "warning",
                                       "the data dir has 4% free", NULL, 1,
                                       0, 1700000000000 + i };
        struct store_alert a;
        pthread_barrier_wait(nd->go);
        if (st == NULL || nd->err[0]) {
            nd->rc[i] = -1;
            continue;
        }
        nd->rc[i] = store_alert_raise(st, &r, &a, &err);
        if (nd->rc[i] < 0) {
            snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
            continue;
        }
        nd->ids[i] = a.id;
        store_alert_clear(&a);
    }
    if (st == NULL)
        snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

static void race(struct fx *f, void *(*step)(void *), struct node nd[2])
{
    pthread_barrier_t go;
    pthread_t th[2];
    assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
    for (int k = 0; k < 2; k++) {
        nd[k].db = f->db;
        nd[k].no = k;
        nd[k].go = &go;
        assert_int_equal(pthread_create(&th[k], NULL, step, &nd[k]), 0);
    }
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&go);
    for (int k = 0; k < 2; k++)
        if (nd[k].err[0])
            fail_msg("node %d: %s", k, nd[k].err);
}

/* Two nodes raise the same alert (kind, key, moment) at once: it folds
 * into one open alert counting both raises, opened once. (PostgreSQL: the
 * advisory lock on kind and key in pg_security.c; without it both nodes
 * find no alert and each opens one.) */
static void test_r21_same_alert_from_two_nodes_folds_into_one(void **state)
{
    struct fx *f = *state;
    static struct node nd[2];
    memset(nd, 0, sizeof(nd));
    race(f, raise_each, nd);
    struct error err = {0};
    assert_int_equal(count_alerts(f, "all"), RACE_ROUNDS);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        if (nd[0].ids[i] != nd[1].ids[i])
            fail_msg("round %d: the raises went to alerts %lld and %lld", i,
                     (long long)nd[0].ids[i], (long long)nd[1].ids[i]);
        /* one opened it, the other folded into it */
        assert_int_equal(nd[0].rc[i] + nd[1].rc[i],
                         STORE_ALERT_OPENED + STORE_ALERT_FOLDED);
        struct store_alert a = get_alert(f, nd[0].ids[i]);
        assert_int_equal(a.count, 2);
        assert_string_equal(a.state, "open");
        store_alert_clear(&a);
        char tl[64];
        timeline(f, nd[0].ids[i], 0, tl, sizeof(tl));
        assert_string_equal(tl, "opened");
    }
    int64_t last = 0;
    assert_int_equal(store_sec_event_last(f->st, &last, &err), 0);
    struct store_sec_event *e = NULL;
    size_t n = 0;
    assert_int_equal(store_sec_events_after(f->st, 0, 1000, &e, &n, &err), 0);
    assert_int_equal(n, RACE_ROUNDS);           /* the outbox: one each */
    assert_int_equal(e[n - 1].id, last);
    store_sec_events_free(e, n);
}

/* RACE_ROUNDS open alerts, ids into both nodes' ids[]. */
static void alerts_to_race(struct fx *f, struct node nd[2])
{
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char key[32];
        snprintf(key, sizeof(key), "m%d", i);
        alert_raise_st(f->st, "integrity.payload", key, ALERT_CRITICAL,
                       "a payload failed its integrity check", NULL);
        nd[0].ids[i] = nd[1].ids[i] = newest(f);
    }
}

static void *escalate_each(void *arg)
{
    struct node *nd = arg;
    struct error err = {0};
    struct store *st = store_open(nd->db, &err);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        struct store_sec_event_new ev = { nd->no ? "user:bob" : "user:ada",
                                          "escalated", "critical",
                                          "escalated to an investigation",
                                          1, 0 };
        pthread_barrier_wait(nd->go);
        if (st == NULL || nd->err[0]) {
            nd->rc[i] = -1;
            continue;
        }
        nd->rc[i] = store_alert_escalate(st, nd->ids[i], 0, "payload",
                                         nd->no ? "bob" : "ada",
                                         1700000000000 + i, &ev, 1,
                                         &nd->got[i], &err);
        if (nd->rc[i] < 0)
            snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
    }
    if (st == NULL)
        snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes escalate the same alert at once (the first step of the
 * ladder): one opens the investigation, the other is told the alert was
 * escalated already (2); one investigation and one "escalated" entry per
 * alert. (PostgreSQL: the alert row locked FOR UPDATE before it is read,
 * and the compare-and-set "incident_id IS NULL"; without both, each node
 * opens its own investigation and the alert points at the last.) */
static void test_r21_alert_escalated_by_two_nodes_once(void **state)
{
    struct fx *f = *state;
    static struct node nd[2];
    memset(nd, 0, sizeof(nd));
    alerts_to_race(f, nd);
    race(f, escalate_each, nd);
    struct error err = {0};
    struct store_incident *inc = NULL;
    size_t n = 0;
    assert_int_equal(store_incident_list(f->st, "all", 0, 1000, &inc, &n,
                                         &err), 0);
    store_incidents_free(inc, n);
    assert_int_equal(n, RACE_ROUNDS);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        int won = nd[0].rc[i] == 1 ? 0 : 1;
        if (nd[won].rc[i] != 1 || nd[1 - won].rc[i] != 2)
            fail_msg("round %d: escalations returned %d and %d", i,
                     nd[0].rc[i], nd[1].rc[i]);
        struct store_alert a = get_alert(f, nd[0].ids[i]);
        assert_string_equal(a.state, "escalated");
        assert_int_equal(a.incident_id, nd[won].got[i]);
        store_alert_clear(&a);
        char tl[128];
        timeline(f, nd[0].ids[i], 0, tl, sizeof(tl));
        assert_string_equal(tl, "opened,escalated");
        timeline(f, 0, nd[won].got[i], tl, sizeof(tl));
        assert_string_equal(tl, "escalated");
    }
}

static void *ack_or_resolve_each(void *arg)
{
    struct node *nd = arg;
    struct error err = {0};
    struct store *st = store_open(nd->db, &err);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char key[32];
        snprintf(key, sizeof(key), "m%d", i);
        struct store_sec_event_new ev = { nd->no ? "user:bob" : "user:ada",
                                          "acknowledged", "critical",
                                          "acknowledged: on it", 0, 0 };
        pthread_barrier_wait(nd->go);
        if (st == NULL || nd->err[0]) {
            nd->rc[i] = -1;
            continue;
        }
        /* expect[0] set: resolve the alert's kind and key; else ack it */
        nd->rc[i] = nd->expect[0]
            ? store_alert_resolve(st, "integrity.payload", key, "cleared",
                                  1700000000000 + i, NULL, &err)
            : store_alert_transition(st, nd->ids[i], "open", "acknowledged",
                                     1700000000000 + i, &ev, &err);
        if (nd->rc[i] < 0)
            snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
    }
    if (st == NULL)
        snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes acknowledge the same open alert at once: one does (1), the
 * other is told it is not open any more (2); one "acknowledged" entry.
 * (PostgreSQL: the compare-and-set "state = from" of one UPDATE; without
 * it both acknowledge.) Then two nodes resolve it at once: resolved once,
 * one "resolved" entry (the UPDATE of live alerts re-checks each row). */
static void test_r21_alert_acked_and_resolved_by_two_nodes_once(void **state)
{
    struct fx *f = *state;
    static struct node nd[2];
    memset(nd, 0, sizeof(nd));
    alerts_to_race(f, nd);
    race(f, ack_or_resolve_each, nd);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        if (nd[0].rc[i] + nd[1].rc[i] != 3)
            fail_msg("round %d: acknowledgements returned %d and %d", i,
                     nd[0].rc[i], nd[1].rc[i]);
        char tl[128];
        timeline(f, nd[0].ids[i], 0, tl, sizeof(tl));
        assert_string_equal(tl, "opened,acknowledged");
    }
    nd[0].expect[0] = nd[1].expect[0] = 1;
    race(f, ack_or_resolve_each, nd);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        if (nd[0].rc[i] + nd[1].rc[i] != 1)
            fail_msg("round %d: resolves returned %d and %d", i,
                     nd[0].rc[i], nd[1].rc[i]);
        struct store_alert a = get_alert(f, nd[0].ids[i]);
        assert_string_equal(a.state, "resolved");
        store_alert_clear(&a);
        char tl[128];
        timeline(f, nd[0].ids[i], 0, tl, sizeof(tl));
        assert_string_equal(tl, "opened,acknowledged,resolved");
    }
    assert_int_equal(count_alerts(f, "live"), 0);
}

static void *incident_put_each(void *arg)
{
    struct node *nd = arg;
    struct error err = {0};
    struct store *st = store_open(nd->db, &err);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        struct store_incident inc;
        memset(&inc, 0, sizeof(inc));
        int rc = st && !nd->err[0]
                 ? store_incident_get(st, nd->ids[i], &inc, &err) : -1;
        pthread_barrier_wait(nd->go);       /* both read it: now write */
        if (rc != 1) {
            nd->rc[i] = -1;
            if (st && !nd->err[0])
                snprintf(nd->err, sizeof(nd->err), "read incident %lld: %s",
                         (long long)nd->ids[i], rc ? err.msg : "none");
            store_incident_clear(&inc);
            continue;
        }
        int64_t expect = inc.updated_at;
        free(inc.tier);
        inc.tier = strdup("incident");
        free(inc.severity);
        inc.severity = strdup(nd->no ? "high" : "medium");
        inc.updated_at = expect + 1 + nd->no;
        inc.incident_at = inc.updated_at;
        struct store_sec_event_new ev = { nd->no ? "user:bob" : "user:ada",
                                          "escalated", "critical",
                                          "tier investigation -> incident",
                                          0, 0 };
        nd->rc[i] = store_incident_put(st, &inc, expect, &ev, 1, &err);
        store_incident_clear(&inc);
        if (nd->rc[i] < 0)
            snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
    }
    if (st == NULL)
        snprintf(nd->err, sizeof(nd->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes take the same investigation up to an incident from the same
 * read of it (the ladder's next step): one write wins, the other is told
 * the row changed (0); one timeline entry, the winner's severity.
 * (PostgreSQL: the compare-and-set on updated_at in one UPDATE; without
 * it both writes land and the step is in the timeline twice.) */
static void test_r21_incident_step_by_two_nodes_once(void **state)
{
    struct fx *f = *state;
    static struct node nd[2];
    memset(nd, 0, sizeof(nd));
    alerts_to_race(f, nd);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        int64_t inc = escalate(f, nd[0].ids[i], 0, SEC_OK);
        nd[0].ids[i] = nd[1].ids[i] = inc;
    }
    race(f, incident_put_each, nd);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        if (nd[0].rc[i] + nd[1].rc[i] != 1)
            fail_msg("round %d: the writes returned %d and %d", i,
                     nd[0].rc[i], nd[1].rc[i]);
        int won = nd[0].rc[i] == 1 ? 0 : 1;
        struct store_incident inc;
        struct error err = {0};
        assert_int_equal(store_incident_get(f->st, nd[0].ids[i], &inc, &err),
                         1);
        assert_string_equal(inc.tier, "incident");
        assert_string_equal(inc.severity, won ? "high" : "medium");
        store_incident_clear(&inc);
        char tl[256];
        timeline(f, 0, nd[0].ids[i], tl, sizeof(tl));
        assert_string_equal(tl, "escalated,opened,escalated");
    }
}

/* ---- wharf.conf -------------------------------------------------------------- */

static void test_r19_conf_defaults_and_checks(void **state)
{
    (void)state;
    struct security_conf c;
    struct error err = {0};
    security_conf_defaults(&c);
    assert_int_equal(c.connector_failing_ms, 300000);
    assert_int_equal(c.disk_free_percent, 10);
    assert_int_equal(c.ncert_days, 4);
    assert_int_equal(c.cert_days[0], 30);
    assert_int_equal(c.cert_days[3], 1);
    assert_string_equal(c.email_url, "");       /* nothing is sent */
    assert_string_equal(c.webhook_url, "");
    assert_string_equal(c.syslog, "");
    assert_int_equal(security_conf_final(&c, &err), 0);

    assert_int_equal(security_conf_set(&c, "alert_cert_days", "14,30",
                                       &err), -1);
    assert_int_equal(security_conf_set(&c, "alert_cert_days", "60,7",
                                       &err), 0);
    assert_int_equal(c.ncert_days, 2);
    assert_int_equal(security_conf_set(&c, "alert_disk_free_percent",
                                       "100", &err), -1);
    assert_int_equal(security_conf_set(&c, "notify_email_url",
                                       "http://mail:25", &err), -1);
    assert_int_equal(security_conf_set(&c, "notify_email_url",
                                       "smtps://u:p@mail:465", &err), -1);
    assert_int_equal(security_conf_set(&c, "notify_webhook_url",
                                       "http://soc/hook", &err), -1);
    assert_int_equal(security_conf_set(&c, "notify_syslog", "udp://x",
                                       &err), -1);
    assert_int_equal(security_conf_set(&c, "notify_syslog_level", "loud",
                                       &err), -1);
    assert_int_equal(security_conf_set(&c, "notify_email_url",
                                       "smtps://127.0.0.1:465", &err), 0);
    assert_int_equal(security_conf_final(&c, &err), -1);   /* no to/from */
    assert_int_equal(security_conf_set(&c, "notify_email_from",
                                       "wharf@example.com", &err), 0);
    assert_int_equal(security_conf_set(&c, "notify_email_to",
                                       "a@example.com,b@example.com", &err),
                     0);
    assert_int_equal(security_conf_final(&c, &err), 0);
    assert_int_equal(security_conf_set(&c, "notify_email_to",
                                       "a@example.com\r\nRCPT TO:<x@y>",
                                       &err), 0);
    assert_int_equal(security_conf_final(&c, &err), -1);
    assert_int_equal(security_conf_set(&c, "no_such_key", "1", &err), 1);
}

/* R11: syslog over TLS is a target of its own; udp:// and tcp:// to
 * another machine are plain text (the posture report names them),
 * loopback and a local socket are not. */
static void test_r11_syslog_tls_target_and_plain_text(void **state)
{
    (void)state;
    struct security_conf c;
    struct error err = {0};
    security_conf_defaults(&c);
    assert_int_equal(security_conf_set(&c, "notify_syslog",
                                       "tls://collector.example:6514", &err),
                     0);
    assert_int_equal(security_conf_set(&c, "notify_syslog", "tls://x",
                                       &err), -1);
    assert_non_null(strstr(err.msg, "needs a host and a port"));
    assert_int_equal(security_conf_set(&c, "notify_syslog", "ssl://x:1",
                                       &err), -1);
    assert_non_null(strstr(err.msg, "tls://HOST:PORT"));
    static const struct { const char *target; int plain; } t[] = {
        { "udp://192.0.2.1:514", 1 }, { "tcp://collector.example:514", 1 },
        { "tcp://[2001:db8::1]:514", 1 }, { "tls://192.0.2.1:6514", 0 },
        { "udp://127.0.0.1:514", 0 }, { "tcp://127.1.2.3:514", 0 },
        { "tcp://localhost:514", 0 }, { "udp://[::1]:514", 0 },
        { "unix:/dev/log", 0 }, { "", 0 }, { "nonsense", 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (net_syslog_plain(t[i].target) != t[i].plain)
            fail_msg("%s: plain %d", t[i].target, !t[i].plain);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    /* both backends */
#define BOTH \
        T(test_r19_repeats_fold_into_one_alert), \
        T(test_r19_clear_resolves_and_a_new_raise_opens_again), \
        T(test_r19_events_fold_only_while_open), \
        T(test_r19_alert_texts_are_one_line_and_redacted), \
        T(test_r19_ack_only_an_open_alert_with_a_reason), \
        T(test_r19_ladder_investigation_incident_breach), \
        T(test_r19_escalate_into_an_open_incident), \
        T(test_r21_same_alert_from_two_nodes_folds_into_one), \
        T(test_r21_alert_escalated_by_two_nodes_once), \
        T(test_r21_alert_acked_and_resolved_by_two_nodes_once), \
        T(test_r21_incident_step_by_two_nodes_once)
    const struct CMUnitTest sqlite[] = {
        BOTH,
        /* opens a whole data dir (wharf_init: its store is w->db_path, a
         * SQLite file) */
        T(test_r19_sealed_value_failing_integrity_raises_an_alert),
        /* wharf.conf only, no store */
        cmocka_unit_test(test_r19_conf_defaults_and_checks),
        cmocka_unit_test(test_r11_syslog_tls_target_and_plain_text),
    };
    const struct CMUnitTest postgresql[] = {
        BOTH,
    };
#undef BOTH
#undef T
    int failed = cmocka_run_group_tests_name("security (sqlite)", sqlite,
                                             NULL, NULL);
    g_pg = 1;
    failed += cmocka_run_group_tests_name("security (postgresql)",
                                          postgresql, NULL, NULL);
    return failed;
}
