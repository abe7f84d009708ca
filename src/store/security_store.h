/*
 * security_store.h - the rows of security operations (R19): alerts, the
 * incidents they were escalated into (tier investigation, incident or
 * breach) and one timeline of both (table security_events), which is also
 * the outbox the notifier reads. Tables of schema migration 8 (sqlite.c);
 * statements in sqlite_security.c.
 *
 * Plain rows and compare-and-set writes, no policy: src/security/ decides
 * what folds, what a transition may do and what the timeline says. Every
 * write that changes a state also appends its timeline event in the same
 * transaction, so a kill -9 never leaves a state change without its event
 * (nor an event without its change). Times are ms since the epoch.
 *
 * Ownership: every struct filled here owns its strings; free with the
 * matching *_clear / *_free function.
 */
#ifndef WHARF_SECURITY_STORE_H
#define WHARF_SECURITY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;

struct store_alert {
    int64_t id;
    char *kind, *key;
    char *level;            /* info | warning | critical */
    char *state;            /* open | acknowledged | escalated | resolved */
    char *summary, *details;
    int64_t count;          /* raises folded into it, the first included */
    int64_t first_at, last_at, updated_at;
    int64_t resolved_at;    /* 0: not resolved */
    int64_t incident_id;    /* 0: not escalated */
};
void store_alert_clear(struct store_alert *a);
void store_alerts_free(struct store_alert *a, size_t n);

/* One raise of an alert. */
struct store_alert_raise {
    const char *kind, *key, *level, *summary, *details;
    int fold_acked;         /* also fold into an acknowledged or escalated
                               alert (a condition that has not cleared);
                               else only into an open one */
    int summary_is_state;   /* a new summary is a state change ("changed") */
    int64_t at;
};

enum store_alert_change {
    STORE_ALERT_FOLDED,     /* count and last_at went up: no event */
    STORE_ALERT_OPENED,     /* a new alert (event "opened") */
    STORE_ALERT_CHANGED     /* folded, with a new level (or summary): event
                               "changed" */
};

/* In one transaction: fold r into the newest alert of its kind and key
 * that may take it, or open a new one; *out gets the alert as it is now
 * (caller clears). The enum store_alert_change, or -1 with err. */
int store_alert_raise(struct store *s, const struct store_alert_raise *r,
                      struct store_alert *out, struct error *err);

/* Resolve every live (open, acknowledged, escalated) alert of kind and key,
 * each with a "resolved" event of text by actor "system". The number
 * resolved (0: none was live); *out (may be NULL) gets the last one. */
int store_alert_resolve(struct store *s, const char *kind, const char *key,
                        const char *text, int64_t at, struct store_alert *out,
                        struct error *err);

/* 1 with *out filled, 0 when there is no alert id, -1 with err. */
int store_alert_get(struct store *s, int64_t id, struct store_alert *out,
                    struct error *err);

/* Alerts in state (NULL or "all": any; "live": open, acknowledged or
 * escalated; else that state) with id < before (0: no bound), newest
 * first, at most limit. *out malloc'ed (free with store_alerts_free). */
int store_alert_list(struct store *s, const char *state, int64_t before,
                     size_t limit, struct store_alert **out, size_t *n,
                     struct error *err);

/* The alerts escalated into incident, oldest first. */
int store_alerts_of_incident(struct store *s, int64_t incident,
                             struct store_alert **out, size_t *n,
                             struct error *err);

/* Live alerts per level: counts[0] info, [1] warning, [2] critical. */
int store_alert_counts(struct store *s, int64_t counts[3],
                       struct error *err);

/* A timeline entry. alert_id / incident_id 0 when it concerns none. */
struct store_sec_event {
    int64_t id, at, alert_id, incident_id;
    char *actor, *action, *level, *text;
};
void store_sec_events_free(struct store_sec_event *e, size_t n);

/* An entry to append (strings borrowed). */
struct store_sec_event_new {
    const char *actor, *action, *level, *text;
    int64_t alert_id, incident_id;
};

/* In one transaction: alert id from state `from` to state `to` (both
 * plain states) and the event ev (its alert_id is set to id). 1 done, 0
 * no such alert, 2 the alert is not in state `from`, -1 with err. */
int store_alert_transition(struct store *s, int64_t id, const char *from,
                           const char *to, int64_t at,
                           const struct store_sec_event_new *ev,
                           struct error *err);

struct store_incident {
    int64_t id;
    char *tier;             /* investigation | incident | breach */
    char *state;            /* open | closed */
    char *title, *owner;
    char *severity;         /* low | medium | high | critical, NULL: unset */
    char *partners;         /* JSON array of names */
    char *messages;         /* JSON array of message ids */
    char *notify;           /* who must be told (breach), NULL: unset */
    int64_t created_at, updated_at;
    int64_t incident_at, breach_at, closed_at;     /* 0: not (yet) */
};
void store_incident_clear(struct store_incident *i);
void store_incidents_free(struct store_incident *i, size_t n);

/* In one transaction: alert alert_id escalated into incident `into` (>0,
 * must be open) or, into 0, into a new investigation of title and owner;
 * the alert becomes "escalated" (a resolved one stays resolved) and gets
 * the incident; events ev[0..nev) are appended with the alert's and the
 * incident's ids. 1 done (*incident set), 0 no such alert, 2 the alert
 * was escalated already, 3 incident `into` does not exist or is closed,
 * -1 with err. */
int store_alert_escalate(struct store *s, int64_t alert_id, int64_t into,
                         const char *title, const char *owner, int64_t at,
                         const struct store_sec_event_new *ev, size_t nev,
                         int64_t *incident, struct error *err);

/* 1 with *out filled, 0 none, -1 with err. */
int store_incident_get(struct store *s, int64_t id,
                       struct store_incident *out, struct error *err);

/* Incidents in state (NULL or "all", "open", "closed"), newest first. */
int store_incident_list(struct store *s, const char *state, int64_t before,
                        size_t limit, struct store_incident **out, size_t *n,
                        struct error *err);

/* In one transaction: write every field of inc (but id, title and
 * created_at) where the row still has updated_at == expect_updated, and
 * append ev[0..nev) with the incident's id. 1 done, 0 the row changed
 * meanwhile or is gone (nothing written), -1 with err. */
int store_incident_put(struct store *s, const struct store_incident *inc,
                       int64_t expect_updated,
                       const struct store_sec_event_new *ev, size_t nev,
                       struct error *err);

/* The timeline of an alert (alert_id > 0) or of an incident, oldest
 * first. */
int store_sec_events_of(struct store *s, int64_t alert_id,
                        int64_t incident_id, struct store_sec_event **out,
                        size_t *n, struct error *err);

/* The outbox: entries with id > after, oldest first, at most limit. */
int store_sec_events_after(struct store *s, int64_t after, size_t limit,
                           struct store_sec_event **out, size_t *n,
                           struct error *err);

/* The id of the newest entry (0 when there is none). */
int store_sec_event_last(struct store *s, int64_t *id, struct error *err);

#endif
