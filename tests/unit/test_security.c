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

#include <unistd.h>

#include "audit/audit.h"
#include "core/wharf.h"
#include "security/alerts.h"
#include "security/detectors.h"
#include "security/incidents.h"
#include "security/security_conf.h"
#include "store/audit_store.h"
#include "store/security_store.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/vault.h"

struct fx {
    char dir[512], db[600];
    struct store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct error err = {0};
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/wharf.db", f->dir);
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

/* Entries of the audit trail whose action is action. */
static int audited(struct fx *f, const char *action, const char *detail_has)
{
    struct store_audit_row *rows = NULL;
    size_t n = 0;
    struct error err = {0};
    int found = 0;
    assert_int_equal(store_audit_list(f->st, 0, 1000, &rows, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].action, action) == 0 &&
            (detail_has == NULL ||
             (rows[i].detail && strstr(rows[i].detail, detail_has))))
            found++;
    store_audit_rows_free(rows, n);
    return found;
}

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
    assert_int_equal(audited(f, "alert.ack", "resending"), 1);
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
    assert_int_equal(audited(f, "alert.escalate", "looks like tampering"), 1);
    assert_int_equal(audited(f, "incident.update", "tier investigation -> "
                             "incident"), 1);
    assert_int_equal(audited(f, "incident.update", "tier incident -> "
                             "breach"), 1);
    assert_int_equal(audited(f, "incident.close", "authority told"), 1);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_r19_repeats_fold_into_one_alert,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_r19_clear_resolves_and_a_new_raise_opens_again, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_r19_events_fold_only_while_open,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_r19_alert_texts_are_one_line_and_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_r19_ack_only_an_open_alert_with_a_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_r19_ladder_investigation_incident_breach, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_r19_escalate_into_an_open_incident, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_r19_sealed_value_failing_integrity_raises_an_alert, setup,
            teardown),
        cmocka_unit_test(test_r19_conf_defaults_and_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
