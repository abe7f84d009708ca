/*
 * api_alerts.c - alerts and the incident ladder over REST (R19):
 *
 *   GET  /api/v1/alerts?state=&limit=        alert.read
 *   GET  /api/v1/alerts/{id}                 alert.read (with its timeline)
 *   POST /api/v1/alerts/{id}/ack             alert.ack      {"reason"}
 *   POST /api/v1/alerts/{id}/escalate        incident.write {"owner",
 *                                            "notes", "incident"?}
 *   GET  /api/v1/incidents?state=            alert.read
 *   GET  /api/v1/incidents/{id}              alert.read
 *   PUT  /api/v1/incidents/{id}              incident.write {"note", "tier",
 *                                            "owner", "severity", "partners",
 *                                            "messages", "notify"}
 *   POST /api/v1/incidents/{id}/close        incident.write {"note"}
 *
 * Thin: the rules, texts and audit entries are security/incidents.c's,
 * shared with the CLI. Must never: decide a transition here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/wharf.h"
#include "security/incidents.h"

static int api_sec_reply(struct api_ctx *c, int rc, json_t *doc,
                         const struct error *err)
{
    switch (rc) {
    case SEC_OK: return api_ok(c, 200, doc);
    case SEC_NOT_FOUND: return api_fail(c, 404, "not_found", "%s", err->msg);
    case SEC_CONFLICT: return api_fail(c, 409, "conflict", "%s", err->msg);
    case SEC_INVALID: return api_fail(c, 400, "invalid", "%s", err->msg);
    default: return api_fail(c, 500, "internal", "%s", err->msg);
    }
}

static struct sec_actor api_sec_actor(const struct api_ctx *c)
{
    struct sec_actor a = { c->actor.name, c->actor.address };
    return a;
}

/* The {id} of the path, or a 404 was sent (returns 0 then). */
static int api_sec_id(struct api_ctx *c, const char *what, int64_t *id)
{
    if (sec_id_parse(c->param[0], id) == 0)
        return 1;
    api_fail(c, 404, "not_found", "no %s '%s'", what, c->param[0]);
    return 0;
}

static size_t api_sec_limit(struct api_ctx *c)
{
    char buf[16];
    const char *v = api_query(c, "limit", buf, sizeof(buf));
    long n = v ? strtol(v, NULL, 10) : 100;
    return n >= 1 && n <= 10000 ? (size_t)n : 100;
}

/* A member of the body that must be a string when present: 0, or a 400
 * was sent (1). */
static int api_sec_str(struct api_ctx *c, const char *key, const char **out)
{
    json_t *v = c->body ? json_object_get(c->body, key) : NULL;
    *out = json_string_value(v);
    if (v == NULL || json_is_string(v))
        return 0;
    api_fail(c, 400, "invalid", "%s must be a string", key);
    return 1;
}

int api_alerts(struct api_ctx *c)
{
    struct error err = {0};
    char state[32];
    json_t *doc = NULL;
    int rc = sec_alert_list(c->st, api_query(c, "state", state,
                                             sizeof(state)),
                            api_sec_limit(c), &doc, &err);
    return api_sec_reply(c, rc, doc, &err);
}

int api_alert_get(struct api_ctx *c)
{
    struct error err = {0};
    json_t *doc = NULL;
    int64_t id;
    if (!api_sec_id(c, "alert", &id))
        return 0;
    int rc = sec_alert_show(c->st, id, &doc, &err);
    return api_sec_reply(c, rc, doc, &err);
}

int api_alert_ack(struct api_ctx *c)
{
    struct error err = {0};
    json_t *doc = NULL;
    const char *reason;
    int64_t id;
    if (!api_sec_id(c, "alert", &id) || api_sec_str(c, "reason", &reason))
        return 0;
    struct sec_actor who = api_sec_actor(c);
    int rc = sec_alert_ack(c->st, c->w->vault, &who, id, reason, &doc, &err);
    return api_sec_reply(c, rc, doc, &err);
}

int api_alert_escalate(struct api_ctx *c)
{
    struct error err = {0};
    json_t *doc = NULL;
    struct sec_escalation e = {0};
    int64_t id;
    if (!api_sec_id(c, "alert", &id) || api_sec_str(c, "owner", &e.owner) ||
        api_sec_str(c, "notes", &e.notes))
        return 0;
    json_t *into = c->body ? json_object_get(c->body, "incident") : NULL;
    if (into && (!json_is_integer(into) || json_integer_value(into) <= 0))
        return api_fail(c, 400, "invalid", "incident must be the number of "
                        "an open incident");
    e.into = into ? (int64_t)json_integer_value(into) : 0;
    struct sec_actor who = api_sec_actor(c);
    int rc = sec_alert_escalate(c->st, c->w->vault, &who, id, &e, &doc, &err);
    return api_sec_reply(c, rc, doc, &err);
}

int api_incidents(struct api_ctx *c)
{
    struct error err = {0};
    char state[32];
    json_t *doc = NULL;
    int rc = sec_incident_list(c->st, api_query(c, "state", state,
                                                sizeof(state)),
                               api_sec_limit(c), &doc, &err);
    return api_sec_reply(c, rc, doc, &err);
}

int api_incident_get(struct api_ctx *c)
{
    struct error err = {0};
    json_t *doc = NULL;
    int64_t id;
    if (!api_sec_id(c, "incident", &id))
        return 0;
    int rc = sec_incident_show(c->st, id, &doc, &err);
    return api_sec_reply(c, rc, doc, &err);
}

int api_incident_update(struct api_ctx *c)
{
    struct error err = {0};
    json_t *doc = NULL;
    struct sec_incident_change ch = {0};
    int64_t id;
    if (!api_sec_id(c, "incident", &id) || api_sec_str(c, "note", &ch.note) ||
        api_sec_str(c, "tier", &ch.tier) ||
        api_sec_str(c, "owner", &ch.owner) ||
        api_sec_str(c, "severity", &ch.severity) ||
        api_sec_str(c, "notify", &ch.notify))
        return 0;
    ch.partners = c->body ? json_object_get(c->body, "partners") : NULL;
    ch.messages = c->body ? json_object_get(c->body, "messages") : NULL;
    struct sec_actor who = api_sec_actor(c);
    int rc = sec_incident_update(c->st, c->w->vault, &who, id, &ch, &doc,
                                 &err);
    return api_sec_reply(c, rc, doc, &err);
}

int api_incident_close(struct api_ctx *c)
{
    struct error err = {0};
    json_t *doc = NULL;
    const char *note;
    int64_t id;
    if (!api_sec_id(c, "incident", &id) || api_sec_str(c, "note", &note))
        return 0;
    struct sec_actor who = api_sec_actor(c);
    int rc = sec_incident_close(c->st, c->w->vault, &who, id, note, &doc,
                                &err);
    return api_sec_reply(c, rc, doc, &err);
}
