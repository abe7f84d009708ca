/*
 * incidents.h - the incident ladder (R19) as the CLI (`wharf alert`,
 * `wharf incident`) and the REST API (/api/v1/alerts, /api/v1/incidents)
 * both call it, so the two cannot drift:
 *
 *   alert:  open --ack--> acknowledged
 *           open | acknowledged | resolved --escalate--> an investigation
 *   incident tiers, upward only:
 *           investigation (owner, notes)
 *        -> incident (severity, affected partners and messages, timeline)
 *        -> breach (the GDPR 72-hour notification clock runs from the time
 *           of this escalation; who must be told)
 *           ... --close--> closed
 *
 * Every transition needs a reason (the why), is written with its timeline
 * entry in one transaction, and is audited (alert.ack, alert.escalate,
 * incident.update, incident.close) with who and why. The views are JSON
 * objects (new references, caller owns).
 */
#ifndef WHARF_INCIDENTS_H
#define WHARF_INCIDENTS_H

#include <jansson.h>
#include <stdint.h>

#include "util/error.h"

struct store;
struct vault;
struct store_alert;
struct store_incident;

/* Results: SEC_OK, or what went wrong (err says it in words). */
enum { SEC_OK = 0, SEC_NOT_FOUND = 1, SEC_CONFLICT = 2, SEC_INVALID = 3,
       SEC_ERROR = -1 };

#define SEC_BREACH_CLOCK_MS (72LL * 3600 * 1000)

struct sec_actor {
    const char *name;           /* "user:alice", "token:ID", "cli" */
    const char *address;        /* or NULL */
};

json_t *sec_alert_json(const struct store_alert *a);
json_t *sec_incident_json(const struct store_incident *i, int64_t now_ms);

/* state: "live" (default: open, acknowledged, escalated), "open",
 * "acknowledged", "escalated", "resolved" or "all". *out: {"alerts":[..]} */
int sec_alert_list(struct store *st, const char *state, size_t limit,
                   json_t **out, struct error *err);
/* The alert with its timeline ("timeline":[...]). */
int sec_alert_show(struct store *st, int64_t id, json_t **out,
                   struct error *err);

int sec_alert_ack(struct store *st, struct vault *v,
                  const struct sec_actor *who, int64_t id,
                  const char *reason, json_t **out, struct error *err);

struct sec_escalation {
    const char *owner;          /* who investigates (required) */
    const char *notes;          /* why (required) */
    int64_t into;               /* an open incident to join; 0: a new one */
};
/* *out: the incident (as sec_incident_show). */
int sec_alert_escalate(struct store *st, struct vault *v,
                       const struct sec_actor *who, int64_t id,
                       const struct sec_escalation *e, json_t **out,
                       struct error *err);

/* state: "open" (default), "closed" or "all". *out: {"incidents":[..]} */
int sec_incident_list(struct store *st, const char *state, size_t limit,
                      json_t **out, struct error *err);
/* The incident with its alerts and timeline, and for a breach the clock. */
int sec_incident_show(struct store *st, int64_t id, json_t **out,
                      struct error *err);

/* What an update changes: NULL members stay as they are. */
struct sec_incident_change {
    const char *tier;           /* incident | breach (upward only) */
    const char *owner;
    const char *severity;       /* low | medium | high | critical */
    const json_t *partners;     /* array of names (replaces) */
    const json_t *messages;     /* array of message ids (replaces) */
    const char *notify;         /* who must be told (breach) */
    const char *note;           /* the why: required */
};
int sec_incident_update(struct store *st, struct vault *v,
                        const struct sec_actor *who, int64_t id,
                        const struct sec_incident_change *ch, json_t **out,
                        struct error *err);
int sec_incident_close(struct store *st, struct vault *v,
                       const struct sec_actor *who, int64_t id,
                       const char *reason, json_t **out, struct error *err);

/* A whole decimal id (> 0) from text: 0, or -1. */
int sec_id_parse(const char *text, int64_t *id);

/* A comma-separated list as a JSON array of strings (new reference), or
 * NULL with err when an item is empty or too long. */
json_t *sec_list_parse(const char *text, struct error *err);

#endif
