/*
 * incidents.c - the incident ladder of incidents.h: what each transition
 * may do, its timeline text and its audit entry, and the JSON views of
 * alerts and incidents.
 *
 * Owns the rules: an acknowledgement only of an open alert; an
 * escalation only of an alert not escalated before (into a new
 * investigation or an open incident); tiers only upward, an incident
 * needs a severity, a breach starts the 72-hour clock and names who must
 * be told; nothing changes a closed incident; every transition has a
 * reason. The rows are written by the store (compare-and-set, one
 * transaction with the timeline entry); this file re-reads before it
 * writes and reports a concurrent change as a conflict.
 *
 * Must never: change a state without its timeline entry and its audit
 * entry; put a secret in either (the texts are what people typed about
 * an incident: they are kept as typed, cut to one line).
 */
#include "security/incidents.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "security/alerts.h"
#include "store/security_store.h"
#include "util/id.h"
#include "util/log.h"

#define SEC_TEXT_MAX 1024       /* a reason, a note, an owner */
#define SEC_LIST_MAX 200        /* items of partners / messages */
#define SEC_ITEM_MAX 200

static const char *const TIERS[] = { "investigation", "incident", "breach" };
static const char *const SEVERITIES[] = { "low", "medium", "high",
                                          "critical", NULL };
static const char BREACH_NOTIFY[] =
    "the supervisory authority within 72 hours of becoming aware (GDPR "
    "Art. 33); the partners whose data is affected (as controllers); the "
    "data subjects when the risk to them is high (Art. 34)";

int sec_id_parse(const char *text, int64_t *id)
{
    char *end;
    errno = 0;
    long long x = text ? strtoll(text, &end, 10) : 0;
    if (text == NULL || errno || end == text || *end != '\0' || x <= 0)
        return -1;
    *id = x;
    return 0;
}

static int tier_rank(const char *tier)
{
    for (int i = 0; tier && i < 3; i++)
        if (strcmp(tier, TIERS[i]) == 0)
            return i;
    return -1;
}

static const char *tier_level(const char *tier)
{
    return tier_rank(tier) > 0 ? "critical" : "warning";
}

/* A text people typed: required or not, one line, bounded. 0 or -1. */
static int sec_text(const char *what, const char *s, int required,
                    struct error *err)
{
    if (s == NULL || s[0] == '\0')
        return required ? error_set(err, "%s is required (say why: it goes "
                                    "into the audit trail)", what) : 0;
    if (strlen(s) > SEC_TEXT_MAX)
        return error_set(err, "%s is longer than %d bytes", what,
                         SEC_TEXT_MAX);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return error_set(err, "%s must be one line without control "
                             "characters", what);
    return 0;
}

json_t *sec_list_parse(const char *text, struct error *err)
{
    json_t *arr = json_array();
    const char *p = text ? text : "";
    while (arr && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[SEC_ITEM_MAX + 1];
        if (len == 0 || len > SEC_ITEM_MAX ||
            json_array_size(arr) == SEC_LIST_MAX) {
            json_decref(arr);
            error_set(err, "a list is up to %d comma-separated names of up "
                      "to %d bytes each, none empty", SEC_LIST_MAX,
                      SEC_ITEM_MAX);
            return NULL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        json_array_append_new(arr, json_string(item));
        p = end ? end + 1 : p + len;
    }
    return arr;
}

/* ---- JSON views ------------------------------------------------------------ */

static json_t *sec_time(int64_t ms)
{
    char iso[32];
    if (ms <= 0)
        return json_null();
    time_iso(ms, iso, sizeof(iso));
    return json_string(iso);
}

json_t *sec_alert_json(const struct store_alert *a)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:o, s:o, "
                     "s:o, s:o}", "id", (json_int_t)a->id,
                     "kind", a->kind ? a->kind : "",
                     "key", a->key ? a->key : "",
                     "level", a->level ? a->level : "",
                     "state", a->state ? a->state : "",
                     "summary", a->summary ? a->summary : "",
                     "details", a->details, "count", (json_int_t)a->count,
                     "first_seen", sec_time(a->first_at),
                     "last_seen", sec_time(a->last_at),
                     "resolved_at", sec_time(a->resolved_at),
                     "incident", a->incident_id > 0
                         ? json_integer(a->incident_id) : json_null());
}

static json_t *sec_list_json(const char *text)
{
    json_error_t je;
    json_t *v = text ? json_loads(text, 0, &je) : NULL;
    if (!json_is_array(v)) {
        json_decref(v);
        return json_array();
    }
    return v;
}

/* The GDPR clock of a breach at now. */
static json_t *sec_breach_json(const struct store_incident *i, int64_t now)
{
    int64_t deadline = i->breach_at + SEC_BREACH_CLOCK_MS;
    int64_t left = deadline - now;
    int closed = i->closed_at > 0;
    return json_pack("{s:o, s:o, s:I, s:b, s:s}", "since",
                     sec_time(i->breach_at), "deadline", sec_time(deadline),
                     "hours_left", (json_int_t)(left / 3600000),
                     "overdue", !closed && left < 0,
                     "notify", i->notify ? i->notify : BREACH_NOTIFY);
}

json_t *sec_incident_json(const struct store_incident *i, int64_t now_ms)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s?, s:o, s:o, s:s?, "
                          "s:o, s:o, s:o, s:o, s:o}", "id", (json_int_t)i->id,
                          "tier", i->tier ? i->tier : "",
                          "state", i->state ? i->state : "",
                          "title", i->title ? i->title : "",
                          "owner", i->owner ? i->owner : "",
                          "severity", i->severity,
                          "partners", sec_list_json(i->partners),
                          "messages", sec_list_json(i->messages),
                          "notify", i->notify,
                          "created", sec_time(i->created_at),
                          "updated", sec_time(i->updated_at),
                          "incident_at", sec_time(i->incident_at),
                          "breach_at", sec_time(i->breach_at),
                          "closed_at", sec_time(i->closed_at));
    if (o && i->breach_at > 0)
        json_object_set_new(o, "breach", sec_breach_json(i, now_ms));
    return o;
}

static json_t *sec_events_json(const struct store_sec_event *e, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:o, s:s, s:s, s:s, s:s, "
            "s:o, s:o}", "id", (json_int_t)e[i].id, "time", sec_time(e[i].at),
            "actor", e[i].actor ? e[i].actor : "",
            "action", e[i].action ? e[i].action : "",
            "level", e[i].level ? e[i].level : "",
            "text", e[i].text ? e[i].text : "",
            "alert", e[i].alert_id > 0 ? json_integer(e[i].alert_id)
                                       : json_null(),
            "incident", e[i].incident_id > 0
                ? json_integer(e[i].incident_id) : json_null()));
    return arr;
}

static int sec_timeline(struct store *st, int64_t alert_id,
                        int64_t incident_id, json_t *into, struct error *err)
{
    struct store_sec_event *ev = NULL;
    size_t n = 0;
    if (store_sec_events_of(st, alert_id, incident_id, &ev, &n, err) < 0)
        return SEC_ERROR;
    json_object_set_new(into, "timeline", sec_events_json(ev, n));
    store_sec_events_free(ev, n);
    return SEC_OK;
}

/* ---- alerts ------------------------------------------------------------------ */

int sec_alert_list(struct store *st, const char *state, size_t limit,
                   json_t **out, struct error *err)
{
    static const char *const STATES[] = { "live", "open", "acknowledged",
        "escalated", "resolved", "all", NULL };
    const char *s = state && state[0] ? state : "live";
    int known = 0;
    for (size_t i = 0; STATES[i]; i++)
        known |= strcmp(STATES[i], s) == 0;
    if (!known)
        return error_set(err, "state must be live, open, acknowledged, "
                         "escalated, resolved or all, not '%s'", s),
               SEC_INVALID;
    struct store_alert *a = NULL;
    size_t n = 0;
    if (store_alert_list(st, s, 0, limit ? limit : 100, &a, &n, err) < 0)
        return SEC_ERROR;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, sec_alert_json(&a[i]));
    store_alerts_free(a, n);
    *out = json_pack("{s:o}", "alerts", arr);
    return SEC_OK;
}

int sec_alert_show(struct store *st, int64_t id, json_t **out,
                   struct error *err)
{
    struct store_alert a;
    int rc = store_alert_get(st, id, &a, err);
    if (rc <= 0)
        return rc < 0 ? SEC_ERROR
                      : (error_set(err, "no alert %lld", (long long)id),
                         SEC_NOT_FOUND);
    *out = sec_alert_json(&a);
    store_alert_clear(&a);
    if (sec_timeline(st, id, 0, *out, err) != SEC_OK) {
        json_decref(*out);
        *out = NULL;
        return SEC_ERROR;
    }
    return SEC_OK;
}

/* Audit a transition; a failure is logged (the change is already made). */
static void sec_audit(struct store *st, struct vault *v,
                      const struct sec_actor *who, const char *action,
                      const char *target, const char *detail)
{
    struct error err = {0};
    struct audit_event e = { who->name, who->address, action, target,
                             detail };
    if (audit_append(st, v, &e, &err) < 0)
        log_error("%s of %s by %s was done but not audited: %s", action,
                  target, who->name, err.msg);
}

int sec_alert_ack(struct store *st, struct vault *v,
                  const struct sec_actor *who, int64_t id,
                  const char *reason, json_t **out, struct error *err)
{
    struct store_alert a;
    char text[SEC_TEXT_MAX + 64], target[32];
    if (sec_text("a reason", reason, 1, err) < 0)
        return SEC_INVALID;
    int rc = store_alert_get(st, id, &a, err);
    if (rc <= 0)
        return rc < 0 ? SEC_ERROR
                      : (error_set(err, "no alert %lld", (long long)id),
                         SEC_NOT_FOUND);
    snprintf(text, sizeof(text), "acknowledged: %s", reason);
    struct store_sec_event_new ev = { who->name, "acknowledged", a.level,
                                      text, 0, 0 };
    rc = store_alert_transition(st, id, "open", "acknowledged",
                                time_now_ms(), &ev, err);
    if (rc == 2)
        error_set(err, "alert %lld is %s, not open: only an open alert is "
                  "acknowledged", (long long)id, a.state ? a.state : "?");
    store_alert_clear(&a);
    if (rc != 1)
        return rc < 0 ? SEC_ERROR : rc == 0 ? SEC_NOT_FOUND : SEC_CONFLICT;
    snprintf(target, sizeof(target), "alert %lld", (long long)id);
    sec_audit(st, v, who, "alert.ack", target, reason);
    if (alerts_logging())
        log_info("ALERT acknowledged: alert %lld by %s: %s", (long long)id,
             who->name, reason);
    alerts_wake();
    return sec_alert_show(st, id, out, err);
}

static int sec_escalate_check(const struct sec_escalation *e,
                              struct error *err)
{
    if (sec_text("the owner", e->owner, 1, err) < 0 ||
        sec_text("the notes", e->notes, 1, err) < 0)
        return -1;
    return 0;
}

/* The timeline texts of an escalation: the alert's and the incident's. */
static void sec_escalate_texts(const struct sec_actor *who, int64_t id,
                               const struct sec_escalation *e, char *alert,
                               char *incident, size_t n)
{
    snprintf(alert, n, "escalated to %s (owner %s): %s",
             e->into > 0 ? "an open incident" : "a new investigation",
             e->owner, e->notes);
    if (e->into > 0)
        snprintf(incident, n, "alert %lld joined (by %s): %s",
                 (long long)id, who->name, e->notes);
    else
        snprintf(incident, n, "investigation opened from alert %lld (owner "
                 "%s): %s", (long long)id, e->owner, e->notes);
}

int sec_alert_escalate(struct store *st, struct vault *v,
                       const struct sec_actor *who, int64_t id,
                       const struct sec_escalation *e, json_t **out,
                       struct error *err)
{
    struct store_alert a;
    char text[2 * SEC_TEXT_MAX + 200], target[32], detail[sizeof(text)];
    if (sec_escalate_check(e, err) < 0)
        return SEC_INVALID;
    int rc = store_alert_get(st, id, &a, err);
    if (rc <= 0)
        return rc < 0 ? SEC_ERROR
                      : (error_set(err, "no alert %lld", (long long)id),
                         SEC_NOT_FOUND);
    char opened[sizeof(text)];
    sec_escalate_texts(who, id, e, text, opened, sizeof(text));
    struct store_sec_event_new ev[2] = {
        { who->name, "escalated", a.level, text, 1, 0 },
        { who->name, e->into > 0 ? "note" : "opened", "warning", opened, 0,
          0 },
    };
    int64_t incident = 0;
    rc = store_alert_escalate(st, id, e->into, a.summary, e->owner,
                              time_now_ms(), ev, 2, &incident, err);
    store_alert_clear(&a);
    if (rc != 1) {
        if (rc == 2)
            error_set(err, "alert %lld was escalated before (see its "
                      "incident)", (long long)id);
        else if (rc == 3)
            error_set(err, "incident %lld does not exist or is closed",
                      (long long)e->into);
        return rc < 0 ? SEC_ERROR : rc == 0 ? SEC_NOT_FOUND
               : rc == 2 ? SEC_CONFLICT : SEC_INVALID;
    }
    snprintf(target, sizeof(target), "alert %lld", (long long)id);
    snprintf(detail, sizeof(detail), "incident %lld owner %s: %s",
             (long long)incident, e->owner, e->notes);
    sec_audit(st, v, who, "alert.escalate", target, detail);
    if (alerts_logging())
        log_warn("ALERT escalated: alert %lld into incident %lld (investigation, "
             "owner %s) by %s", (long long)id, (long long)incident, e->owner,
             who->name);
    alerts_wake();
    return sec_incident_show(st, incident, out, err);
}

/* ---- incidents ---------------------------------------------------------------- */

int sec_incident_list(struct store *st, const char *state, size_t limit,
                      json_t **out, struct error *err)
{
    const char *s = state && state[0] ? state : "open";
    if (strcmp(s, "open") && strcmp(s, "closed") && strcmp(s, "all"))
        return error_set(err, "state must be open, closed or all, not '%s'",
                         s), SEC_INVALID;
    struct store_incident *inc = NULL;
    size_t n = 0;
    if (store_incident_list(st, s, 0, limit ? limit : 100, &inc, &n,
                            err) < 0)
        return SEC_ERROR;
    json_t *arr = json_array();
    int64_t now = time_now_ms();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, sec_incident_json(&inc[i], now));
    store_incidents_free(inc, n);
    *out = json_pack("{s:o}", "incidents", arr);
    return SEC_OK;
}

int sec_incident_show(struct store *st, int64_t id, json_t **out,
                      struct error *err)
{
    struct store_incident inc;
    struct store_alert *a = NULL;
    size_t n = 0;
    int rc = store_incident_get(st, id, &inc, err);
    if (rc <= 0)
        return rc < 0 ? SEC_ERROR
                      : (error_set(err, "no incident %lld", (long long)id),
                         SEC_NOT_FOUND);
    *out = sec_incident_json(&inc, time_now_ms());
    store_incident_clear(&inc);
    if (store_alerts_of_incident(st, id, &a, &n, err) < 0 ||
        sec_timeline(st, 0, id, *out, err) != SEC_OK) {
        store_alerts_free(a, n);
        json_decref(*out);
        *out = NULL;
        return SEC_ERROR;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, sec_alert_json(&a[i]));
    store_alerts_free(a, n);
    json_object_set_new(*out, "alerts", arr);
    return SEC_OK;
}

/* An array of short strings, as a list column's JSON text (caller frees). */
static char *sec_list_text(const json_t *arr, const char *what,
                           struct error *err)
{
    size_t i;
    const json_t *v;
    if (!json_is_array(arr) || json_array_size(arr) > SEC_LIST_MAX)
        return error_set(err, "%s must be an array of up to %d names", what,
                         SEC_LIST_MAX), NULL;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL || s[0] == '\0' || strlen(s) > SEC_ITEM_MAX)
            return error_set(err, "%s must hold non-empty strings of up to "
                             "%d bytes", what, SEC_ITEM_MAX), NULL;
    }
    return json_dumps(arr, JSON_COMPACT);
}

static int sec_severity_ok(const char *s)
{
    for (size_t i = 0; SEVERITIES[i]; i++)
        if (strcmp(SEVERITIES[i], s) == 0)
            return 1;
    return 0;
}

/* Append "; " + text to buf (bounded). */
static void sec_cat(char *buf, size_t n, const char *text)
{
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "%s%s", len ? "; " : "", text);
}

/* Replace *field by value (strdup) when it differs; describe the change.
 * -1 out of memory. */
static int sec_set(char **field, const char *value, const char *name,
                   char *changes, size_t n)
{
    if (value == NULL || (*field && strcmp(*field, value) == 0))
        return 0;
    char *copy = strdup(value);
    if (copy == NULL)
        return -1;
    char line[SEC_TEXT_MAX + 64];
    snprintf(line, sizeof(line), "%s %s", name, value);
    sec_cat(changes, n, line);
    free(*field);
    *field = copy;
    return 0;
}

/* The tier change of ch on inc at now (tier, incident_at, breach_at,
 * notify). 0, or -1 with err (SEC_INVALID). */
static int sec_tier(struct store_incident *inc,
                    const struct sec_incident_change *ch, int64_t now,
                    char *changes, size_t n, struct error *err)
{
    int from = tier_rank(inc->tier), to = tier_rank(ch->tier);
    if (to < 0)
        return error_set(err, "tier must be investigation, incident or "
                         "breach, not '%s'", ch->tier);
    if (to < from)
        return error_set(err, "incident %lld is a %s; tiers only go up (close "
                         "it instead)", (long long)inc->id, inc->tier);
    if (to == from)
        return 0;
    if (to >= 1 && (ch->severity ? ch->severity : inc->severity) == NULL)
        return error_set(err, "an incident needs a severity (low, medium, "
                         "high or critical)");
    if (to >= 1 && inc->incident_at == 0)
        inc->incident_at = now;
    if (to == 2) {
        inc->breach_at = now;
        if (ch->notify == NULL && inc->notify == NULL &&
            (inc->notify = strdup(BREACH_NOTIFY)) == NULL)
            return error_set(err, "out of memory");
    }
    char line[160];
    snprintf(line, sizeof(line), "tier %s -> %s%s", inc->tier, TIERS[to],
             to == 2 ? " (the 72-hour notification clock starts now)" : "");
    sec_cat(changes, n, line);
    free(inc->tier);
    inc->tier = strdup(TIERS[to]);
    return inc->tier ? 0 : error_set(err, "out of memory");
}

static int sec_change_check(const struct sec_incident_change *ch,
                            struct error *err)
{
    if (sec_text("a note", ch->note, 1, err) < 0 ||
        sec_text("the owner", ch->owner, 0, err) < 0 ||
        sec_text("notify", ch->notify, 0, err) < 0)
        return -1;
    if (ch->owner && ch->owner[0] == '\0')
        return error_set(err, "the owner may not be empty");
    if (ch->severity && !sec_severity_ok(ch->severity))
        return error_set(err, "severity must be low, medium, high or "
                         "critical, not '%s'", ch->severity);
    if (ch->tier && tier_rank(ch->tier) < 0)
        return error_set(err, "tier must be investigation, incident or "
                         "breach, not '%s'", ch->tier);
    const json_t *lists[2] = { ch->partners, ch->messages };
    const char *names[2] = { "partners", "messages" };
    for (int i = 0; i < 2; i++) {
        char *text = lists[i] ? sec_list_text(lists[i], names[i], err) : NULL;
        if (lists[i] && text == NULL)
            return -1;
        free(text);
    }
    return 0;
}

/* Apply ch to inc (read just before); changes gets the description. */
static int sec_apply(struct store_incident *inc,
                     const struct sec_incident_change *ch, int64_t now,
                     char *changes, size_t n, struct error *err)
{
    if (ch->tier && sec_tier(inc, ch, now, changes, n, err) < 0)
        return -1;
    char *p = NULL, *m = NULL;
    if ((ch->partners && (p = sec_list_text(ch->partners, "partners",
                                            err)) == NULL) ||
        (ch->messages && (m = sec_list_text(ch->messages, "messages",
                                            err)) == NULL)) {
        free(p);
        return -1;
    }
    int rc = sec_set(&inc->owner, ch->owner, "owner", changes, n) < 0 ||
             sec_set(&inc->severity, ch->severity, "severity", changes,
                     n) < 0 ||
             sec_set(&inc->partners, p, "partners", changes, n) < 0 ||
             sec_set(&inc->messages, m, "messages", changes, n) < 0 ||
             sec_set(&inc->notify, ch->notify, "notify", changes, n) < 0;
    free(p);
    free(m);
    return rc ? error_set(err, "out of memory") : 0;
}

/* Write inc (changed from the row read at expect) with one timeline entry
 * and its audit entry. */
static int sec_incident_write(struct store *st, struct vault *v,
                              const struct sec_actor *who,
                              struct store_incident *inc, int64_t expect,
                              const char *action, const char *audit_action,
                              const char *text, struct error *err)
{
    char target[32];
    int64_t now = time_now_ms();
    inc->updated_at = now > expect ? now : expect + 1;
    struct store_sec_event_new ev = { who->name, action,
                                      tier_level(inc->tier), text, 0, 0 };
    int rc = store_incident_put(st, inc, expect, &ev, 1, err);
    if (rc <= 0)
        return rc < 0 ? SEC_ERROR
               : (error_set(err, "incident %lld changed meanwhile; look at "
                            "it again", (long long)inc->id), SEC_CONFLICT);
    snprintf(target, sizeof(target), "incident %lld", (long long)inc->id);
    sec_audit(st, v, who, audit_action, target, text);
    if (alerts_logging())
        log_warn("incident %lld (%s) %s by %s: %s", (long long)inc->id,
             inc->tier, action, who->name, text);
    alerts_wake();
    return SEC_OK;
}

/* The open incident id, read into *inc: SEC_OK or why not. */
static int sec_incident_open(struct store *st, int64_t id,
                             struct store_incident *inc, struct error *err)
{
    int rc = store_incident_get(st, id, inc, err);
    if (rc <= 0)
        return rc < 0 ? SEC_ERROR
                      : (error_set(err, "no incident %lld", (long long)id),
                         SEC_NOT_FOUND);
    if (inc->state && strcmp(inc->state, "open") != 0) {
        store_incident_clear(inc);
        return error_set(err, "incident %lld is closed", (long long)id),
               SEC_CONFLICT;
    }
    return SEC_OK;
}

int sec_incident_update(struct store *st, struct vault *v,
                        const struct sec_actor *who, int64_t id,
                        const struct sec_incident_change *ch, json_t **out,
                        struct error *err)
{
    struct store_incident inc;
    char changes[4 * SEC_TEXT_MAX] = "", text[sizeof(changes) + 64];
    if (sec_change_check(ch, err) < 0)
        return SEC_INVALID;
    int rc = sec_incident_open(st, id, &inc, err);
    if (rc != SEC_OK)
        return rc;
    int64_t expect = inc.updated_at;
    const char *old_tier = inc.tier ? inc.tier : "";
    int tier_before = tier_rank(old_tier);
    if (sec_apply(&inc, ch, time_now_ms(), changes, sizeof(changes),
                  err) < 0) {
        store_incident_clear(&inc);
        return SEC_INVALID;
    }
    snprintf(text, sizeof(text), "%s%snote: %s", changes,
             changes[0] ? "; " : "", ch->note);
    const char *action = tier_rank(inc.tier) > tier_before ? "escalated"
                         : changes[0] ? "updated" : "note";
    rc = sec_incident_write(st, v, who, &inc, expect, action,
                            "incident.update", text, err);
    store_incident_clear(&inc);
    return rc != SEC_OK ? rc : sec_incident_show(st, id, out, err);
}

int sec_incident_close(struct store *st, struct vault *v,
                       const struct sec_actor *who, int64_t id,
                       const char *reason, json_t **out, struct error *err)
{
    struct store_incident inc;
    char text[SEC_TEXT_MAX + 32];
    if (sec_text("a reason", reason, 1, err) < 0)
        return SEC_INVALID;
    int rc = sec_incident_open(st, id, &inc, err);
    if (rc != SEC_OK)
        return rc;
    int64_t expect = inc.updated_at;
    char *closed = strdup("closed");
    if (closed == NULL) {
        store_incident_clear(&inc);
        return error_set(err, "out of memory"), SEC_ERROR;
    }
    free(inc.state);
    inc.state = closed;
    inc.closed_at = time_now_ms();
    snprintf(text, sizeof(text), "closed: %s", reason);
    rc = sec_incident_write(st, v, who, &inc, expect, "closed",
                            "incident.close", text, err);
    store_incident_clear(&inc);
    return rc != SEC_OK ? rc : sec_incident_show(st, id, out, err);
}
