/*
 * retention.c - retention purges, erasure and legal holds (R9); see
 * retention.h for the rules.
 *
 * Owns the decision of what is expired (per source connector, else the
 * default) and the order of a purge: rows deleted with their payload files
 * listed (one transaction, store/retention_store.h), then every listed
 * file crypto-shredded (vault payload_destroy: the wrapped data key in the
 * header overwritten and synced, then the file unlinked) and crossed off.
 *
 * Must never: delete or erase a message under a legal hold or one still in
 * flight; touch the audit trail; log a payload's name at more than debug
 * (a file name can be personal data).
 */
#define _XOPEN_SOURCE 700
#include "security/retention.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/payloads.h"
#include "core/wharf.h"
#include "store/retention_store.h"
#include "store/store.h"
#include "util/fault.h"
#include "util/id.h"
#include "util/log.h"
#include "vault/vault.h"

#define PURGE_BATCH 256
#define DAY_MS 86400000LL

int retention_parse_date(const char *s, int64_t *out, struct error *err)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (end == NULL || *end) {
        memset(&tm, 0, sizeof(tm));
        end = s ? strptime(s, "%Y-%m-%d", &tm) : NULL;
    }
    if (end == NULL || *end || tm.tm_year < 70)
        return error_set(err, "'%s' is not a date: give YYYY-MM-DD (midnight "
                         "UTC) or YYYY-MM-DDTHH:MM:SSZ", s ? s : "");
    *out = (int64_t)timegm(&tm) * 1000;
    return 0;
}

int retention_days_of(const char *config_json, int def)
{
    json_t *c = config_json ? json_loads(config_json, 0, NULL) : NULL;
    json_t *d = json_object_get(c, "retention_days");
    int days = json_is_integer(d) ? (int)json_integer_value(d) : def;
    json_decref(c);
    return days;
}

/* ---- shredding -------------------------------------------------------------------- */

/* Shred the payload files the purges listed (all of them, batch by
 * batch). Failures stay listed. */
static int purge_shred_pending(struct wharf *w, struct store *st,
                               struct retention_result *r, struct error *err)
{
    for (;;) {
        struct store_pending *p;
        size_t n, done = 0;
        if (store_purge_pending(st, PURGE_BATCH, &p, &n, err) < 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            struct error e = {0};
            fault_point("retention.shred");     /* test hook: kill -9 here */
            if (wharf_payload_destroy(w, p[i].payload_path, &e) < 0) {
                log_error("purge: payload of message %s not shredded (the "
                          "next purge tries again): %s", p[i].id, e.msg);
                r->failed++;
                continue;
            }
            if (store_purge_done(st, p[i].id, err) < 0) {
                store_pending_free(p, n);
                return -1;
            }
            r->shredded++;
            done++;
        }
        store_pending_free(p, n);
        if (n < PURGE_BATCH || done == 0)
            return 0;
    }
}

/* ---- purging one scope ---------------------------------------------------------------- */

/* Delete the expired messages of source (NULL: any) created before
 * `before`, batch by batch, shredding after each batch. */
static int purge_scope(struct wharf *w, struct store *st, const char *source,
                       int64_t before, const struct retention_plan *p,
                       struct retention_result *r, struct error *err)
{
    int64_t held = 0, count = 0, bytes = 0;
    if (store_purge_held(st, source, before, &held, err) < 0)
        return -1;
    r->held += held;
    if (p->dry_run) {
        if (store_purge_count(st, source, before, &count, &bytes, err) < 0)
            return -1;
        r->messages += count;
        r->bytes += bytes;
        return 0;
    }
    for (;;) {
        struct store_expired *e;
        size_t n, ngone = 0;
        if (store_purge_candidates(st, source, before, PURGE_BATCH, &e, &n,
                                   err) < 0)
            return -1;
        const char **ids = calloc(n + 1, sizeof(*ids));
        int *gone = calloc(n + 1, sizeof(*gone));
        for (size_t i = 0; ids && gone && i < n; i++)
            ids[i] = e[i].id;
        int rc = ids && gone ? 0 : error_set(err, "out of memory");
        if (rc == 0)
            rc = store_purge_delete(st, ids, n, p->now, gone, err);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            ngone += (size_t)gone[i];
            r->bytes += gone[i] ? e[i].size : 0;
        }
        r->messages += (int64_t)ngone;
        free(ids);
        free(gone);
        store_expired_free(e, n);
        if (rc < 0 || purge_shred_pending(w, st, r, err) < 0)
            return -1;
        if (n < PURGE_BATCH || ngone == 0)
            return 0;
    }
}

/* The retention of every connector of the stored flow, by name. */
static json_t *purge_days_by_connector(struct store *st, int def,
                                       struct error *err)
{
    struct store_flow f;
    if (store_flow_get(st, &f, err) < 0)
        return NULL;
    json_t *days = json_object();
    for (size_t i = 0; i < f.nconns; i++)
        json_object_set_new(days, f.conns[i].name, json_integer(
            retention_days_of(f.conns[i].config, def)));
    store_flow_clear(&f);
    return days;
}

/* One scope per source of stored messages, each with its retention. */
static int purge_by_retention(struct wharf *w, struct store *st,
                              const struct retention_plan *p,
                              struct retention_result *r, struct error *err)
{
    json_t *days = purge_days_by_connector(st, p->default_days, err);
    char **sources = NULL;
    size_t n = 0;
    if (days == NULL || store_message_sources(st, &sources, &n, err) < 0) {
        json_decref(days);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *d = json_object_get(days, sources[i]);
        long long k = d ? json_integer_value(d) : p->default_days;
        if (k > 0)
            rc = purge_scope(w, st, sources[i], p->now - k * DAY_MS, p, r,
                             err);
    }
    store_names_free(sources, n);
    json_decref(days);
    return rc;
}

void retention_detail(const struct retention_plan *p,
                      const struct retention_result *r, int ok, char *out,
                      size_t n)
{
    char when[32] = "retention_days";
    if (p->before > 0)
        time_iso(p->before, when, sizeof(when));
    snprintf(out, n, "purged=%lld bytes=%lld held_kept=%lld shredded=%lld "
             "failed=%lld resumed=%lld before=%s%s", (long long)r->messages,
             (long long)r->bytes, (long long)r->held, (long long)r->shredded,
             (long long)r->failed, (long long)r->resumed, when,
             ok ? "" : " (stopped by an error)");
}

int retention_purge(struct wharf *w, struct store *st,
                    const struct retention_plan *p, struct retention_result *r,
                    struct error *err)
{
    memset(r, 0, sizeof(*r));
    /* what an interrupted purge left listed goes first */
    if (!p->dry_run) {
        if (purge_shred_pending(w, st, r, err) < 0)
            return -1;
        r->resumed = r->shredded;
    }
    if (p->before > 0)
        return purge_scope(w, st, NULL, p->before, p, r, err);
    return purge_by_retention(w, st, p, r, err);
}

/* ---- erasure ------------------------------------------------------------------------ */

/* Shred the payload of message e and mark it erased. */
static int erase_one(struct wharf *w, struct store *st,
                     const struct store_expired *e, const char *actor,
                     struct error *err)
{
    if (e->payload_path && wharf_payload_destroy(w, e->payload_path,
                                                 err) < 0)
        return -1;
    return store_message_erase(st, e->id, actor, err) < 0 ? -1 : 0;
}

int retention_erase(struct wharf *w, struct store *st, const char *id,
                    const char *actor, int64_t *bytes, struct error *err)
{
    struct store_message m;
    struct store_hold h;
    *bytes = 0;
    int found = store_message_get(st, id, &m, err);
    if (found != 0)
        return found;
    int held = store_hold_get(st, id, &h, err);
    store_hold_clear(&h);
    if (held <= 0) {
        store_message_clear(&m);
        if (held == 0)
            error_set(err, "message %s is under a legal hold: an "
                      "administrator lifts it first (`wharf message unhold "
                      "%s`)", id, id);
        return held == 0 ? 2 : -1;
    }
    struct store_expired e = { .payload_path = m.payload_path };
    memcpy(e.id, m.id, sizeof(e.id));
    *bytes = m.payload_path ? m.size : 0;
    int rc = erase_one(w, st, &e, actor, err);
    store_message_clear(&m);
    return rc;
}

/* The names of the stored flow's connectors whose "partner" is partner,
 * as a JSON array; *known 1 when the flow has that partner. */
static json_t *partner_connectors(struct store *st, const char *partner,
                                  int *known, struct error *err)
{
    struct store_flow f;
    *known = 0;
    if (store_flow_get(st, &f, err) < 0)
        return NULL;
    json_t *names = json_array();
    for (size_t i = 0; i < f.npartners; i++)
        *known |= strcmp(f.partners[i].name, partner) == 0;
    for (size_t i = 0; i < f.nconns; i++) {
        json_t *c = json_loads(f.conns[i].config, 0, NULL);
        const char *p = json_string_value(json_object_get(c, "partner"));
        if (p && strcmp(p, partner) == 0)
            json_array_append_new(names, json_string(f.conns[i].name));
        json_decref(c);
    }
    store_flow_clear(&f);
    return names;
}

/* "a,b" of a JSON array of names (malloc'ed). */
static char *names_joined(const json_t *names)
{
    size_t len = 1, i;
    json_t *v;
    json_array_foreach(names, i, v) {
        len += strlen(json_string_value(v)) + 1;
    }
    char *out = calloc(1, len);
    json_array_foreach(names, i, v) {
        if (out && i)
            strncat(out, ",", len - strlen(out) - 1);
        if (out)
            strncat(out, json_string_value(v), len - strlen(out) - 1);
    }
    return out;
}

int retention_erase_partner(struct wharf *w, struct store *st,
                            const char *partner, const char *actor,
                            struct retention_result *r, char **conns,
                            struct error *err)
{
    int known;
    memset(r, 0, sizeof(*r));
    *conns = NULL;
    json_t *names = partner_connectors(st, partner, &known, err);
    if (names == NULL)
        return -1;
    if (!known) {
        json_decref(names);
        return 1;
    }
    char *text = json_dumps(names, JSON_COMPACT);
    struct store_expired *e = NULL;
    int *held = NULL;
    size_t n = 0;
    int rc = text ? store_messages_of(st, text, &e, &held, &n, err)
                  : error_set(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (held[i]) {
            r->held++;
        } else if (strcmp(e[i].state, "erased") != 0) {
            rc = erase_one(w, st, &e[i], actor, err);
            r->messages += rc == 0;
            r->bytes += rc == 0 && e[i].payload_path ? e[i].size : 0;
        }
    }
    *conns = names_joined(names);
    free(text);
    free(held);
    store_expired_free(e, n);
    json_decref(names);
    return rc;
}

/* ---- legal holds ------------------------------------------------------------------------ */

int retention_hold(struct store *st, const char *id, const char *actor,
                   const char *reason, struct error *err)
{
    return store_hold_set(st, id, actor, reason, time_now_ms(), err);
}

int retention_unhold(struct store *st, const char *id, struct error *err)
{
    return store_hold_lift(st, id, err);
}
