/*
 * api_console.c - what the web console needs beyond the resources'
 * own routes: how one may sign in (public: the login page shows an OIDC
 * button only when single sign-on is configured), and the caller's
 * permissions and idle timeout with "who am I" (api_me_extra), so the
 * console shows only actions the server would allow. The server checks
 * every call anyway (api.c); nothing here grants anything. And the
 * message search behind GET /api/v1/messages: text, state, connector,
 * partner, time range, keyset paging (`after` the last id of a page);
 * the dashboard (messages per hour, connectors' state, expiring
 * certificates, failed messages, transfers in flight) and the transfers
 * alone (polled each second for the progress bars).
 *
 * Must never: tell an unauthenticated caller anything about accounts;
 * return a setting's secret value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/health.h"
#include "core/message.h"
#include "core/partners.h"
#include "core/progress.h"
#include "store/console_store.h"
#include "store/store.h"
#include "util/id.h"

int api_auth_methods(struct api_ctx *c)
{
    struct error err = {0};
    char *issuer = NULL;
    int oidc = store_setting_get(c->st, "oidc_issuer", &issuer, &err) == 0 &&
               issuer && issuer[0] &&
               auth_form_allowed(c->st, "oidc", &err) == 1;
    int password = auth_form_allowed(c->st, "password", &err) == 1;
    free(issuer);
    return api_ok(c, 200, json_pack("{s:b, s:b}", "password", password,
                                    "oidc", oidc));
}

void api_me_extra(struct api_ctx *c, json_t *me)
{
    json_t *perms = json_array();
    for (int p = 0; p < PERM_COUNT; p++)
        if (rbac_allows(c->who.role, (enum perm)p))
            json_array_append_new(perms, json_string(rbac_perm_name(
                (enum perm)p)));
    json_object_set_new(me, "permissions", perms);
    json_object_set_new(me, "idle_seconds",
                        json_integer((json_int_t)(c->auth.idle_ms / 1000)));
}

/* ---- message search (GET /api/v1/messages with filters) -------------------- */

/* A whole number query parameter in [min, max] into *v (def when absent);
 * 0, or the 400 was sent (1). */
static int query_int(struct api_ctx *c, const char *name, int64_t def,
                     int64_t min, int64_t max, int64_t *v)
{
    char buf[32];
    const char *s = api_query(c, name, buf, sizeof(buf));
    *v = def;
    if (s == NULL)
        return 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*s && !*end && x >= min && x <= max) {
        *v = x;
        return 0;
    }
    api_fail(c, 400, "invalid", "%s must be a whole number from %lld to %lld",
             name, (long long)min, (long long)max);
    return 1;
}

static int contains_ci(const char *hay, const char *needle)
{
    return hay && needle && strcasestr(hay, needle) != NULL;
}

/* The connectors (a JSON array text) whose config names a partner that
 * `want` picks: by exact name (exact) or by a name or AS2 id containing
 * it. NULL when none. Caller frees. */
static char *partner_connectors(const struct store_flow *f, const char *want,
                                int exact)
{
    json_t *names = json_array();
    for (size_t i = 0; i < f->nconns; i++) {
        json_error_t je;
        json_t *cfg = json_loads(f->conns[i].config, 0, &je);
        const char *p = json_string_value(json_object_get(cfg, "partner"));
        int hit = 0;
        for (size_t k = 0; p && k < f->npartners && !hit; k++)
            hit = !strcmp(f->partners[k].name, p) &&
                  (exact ? !strcmp(p, want)
                         : contains_ci(p, want) ||
                           contains_ci(f->partners[k].as2_id, want));
        if (hit)
            json_array_append_new(names, json_string(f->conns[i].name));
        json_decref(cfg);
    }
    char *text = json_array_size(names) ? json_dumps(names, JSON_COMPACT)
                                        : NULL;
    json_decref(names);
    return text;
}

/* "<0193...@wharf>" and "0193...@host" search by the id part too. */
static void text_for_id(const char *q, char *out, size_t n)
{
    snprintf(out, n, "%s", q[0] == '<' ? q + 1 : q);
    char *at = strchr(out, '@');
    if (at)
        *at = '\0';
}

struct search_args {
    char q[256], idq[256], state[32], connector[128], partner[128],
        after[64];
    int64_t since, until, limit;
};

/* A text filter: absent is fine; present but too long or badly escaped
 * is a 400 (never silently dropped: the answer would be unfiltered). 0, or
 * the 400 was sent (1). */
static int query_text(struct api_ctx *c, const char *name, char *buf,
                      size_t n)
{
    if (api_query(c, name, buf, n) != NULL || !api_query_has(c, name))
        return 0;
    buf[0] = '\0';
    return api_fail(c, 400, "invalid", "%s must be percent-encoded text of "
                    "at most %zu bytes", name, n - 1), 1;
}

/* Parse the query; 0, or the 400 was sent (1). */
static int search_args(struct api_ctx *c, struct search_args *a)
{
    memset(a, 0, sizeof(*a));
    if (query_text(c, "q", a->q, sizeof(a->q)) ||
        query_text(c, "state", a->state, sizeof(a->state)) ||
        query_text(c, "connector", a->connector, sizeof(a->connector)) ||
        query_text(c, "partner", a->partner, sizeof(a->partner)) ||
        query_text(c, "after", a->after, sizeof(a->after)))
        return 1;
    if (query_int(c, "limit", 100, 1, 1000, &a->limit) ||
        query_int(c, "since", 0, 0, INT64_MAX / 2, &a->since) ||
        query_int(c, "until", 0, 0, INT64_MAX / 2, &a->until))
        return 1;
    if (a->state[0] && !store_message_state_known(a->state))
        return api_fail(c, 400, "invalid", "unknown state (one of queued "
                        "processing retrying sent failed received refused "
                        "erased)"), 1;
    if (a->after[0] && !id_valid(a->after))
        return api_fail(c, 400, "invalid", "after must be a message id (the "
                        "last one of the page before)"), 1;
    text_for_id(a->q, a->idq, sizeof(a->idq));
    return 0;
}

static int search_reply(struct api_ctx *c, struct store_message *ms,
                        size_t n, int64_t limit)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, message_json(&ms[i]));
    json_t *body = json_pack("{s:o, s:I}", "messages", arr, "limit",
                             (json_int_t)limit);
    json_object_set_new(body, "next", (int64_t)n == limit && n > 0
                        ? json_string(ms[n - 1].id) : json_null());
    return api_ok(c, 200, body);
}

int api_message_search(struct api_ctx *c)
{
    struct error err = {0};
    struct search_args a;
    if (search_args(c, &a))
        return 0;
    struct store_flow f;
    if (store_flow_get(c->st, &f, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    char *by_partner = a.partner[0] ? partner_connectors(&f, a.partner, 1)
                                    : NULL;
    char *by_text = a.q[0] ? partner_connectors(&f, a.q, 0) : NULL;
    store_flow_clear(&f);
    if (a.partner[0] && by_partner == NULL) {
        free(by_text);      /* a partner without connectors: no messages */
        return search_reply(c, NULL, 0, a.limit);
    }
    struct store_message_query q = {
        .before_id = a.after, .state = a.state, .connector = a.connector,
        .connectors_json = by_partner, .text = a.q[0] ? a.q : NULL,
        .id_text = a.idq, .text_connectors_json = by_text,
        .since_ms = a.since, .until_ms = a.until, .limit = a.limit };
    struct store_message *ms = NULL;
    size_t n = 0;
    int rc = store_message_search(c->st, &q, &ms, &n, &err);
    free(by_partner);
    free(by_text);
    if (rc < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    rc = search_reply(c, ms, n, a.limit);
    store_messages_free(ms, n);
    return rc;
}

/* ---- the dashboard --------------------------------------------------------- */

#define HOUR_MS 3600000LL

static json_t *hours_json(struct api_ctx *c, int64_t now, struct error *err)
{
    int64_t counts[24][3];
    int64_t since = (now / HOUR_MS - 23) * HOUR_MS;
    if (store_message_hourly(c->st, since, 24, counts, err) < 0)
        return NULL;
    json_t *arr = json_array();
    for (int i = 0; i < 24; i++)
        json_array_append_new(arr, json_pack("{s:I, s:I, s:I, s:I}",
            "start", (json_int_t)(since + i * HOUR_MS), "sent",
            (json_int_t)counts[i][0], "failed", (json_int_t)counts[i][1],
            "refused", (json_int_t)counts[i][2]));
    return arr;
}

/* Each connector of the stored flow with what the running engine says of
 * it (core/health.h): ok, failing (since), left_out (could not open). */
static json_t *connectors_json(struct api_ctx *c, struct error *err)
{
    struct store_flow f;
    if (store_flow_get(c->st, &f, err) < 0)
        return NULL;
    json_t *state = health_state(), *arr = json_array();
    json_t *left = json_object_get(state, "left_out");
    json_t *failing = json_object_get(state, "failing");
    for (size_t i = 0; i < f.nconns; i++) {
        const char *name = f.conns[i].name, *st = "ok";
        json_t *since = NULL;
        size_t k;
        json_t *v;
        json_array_foreach(left, k, v)
            if (!strcmp(json_string_value(v) ? json_string_value(v) : "", name))
                st = "left_out";
        json_array_foreach(failing, k, v)
            if (!strcmp(json_string_value(json_object_get(v, "connector"))
                        ? json_string_value(json_object_get(v, "connector"))
                        : "", name)) {
                st = "failing";
                since = json_object_get(v, "since");
            }
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:O?}", "name",
            name, "type", f.conns[i].type, "state", st, "since", since));
    }
    json_decref(state);
    store_flow_clear(&f);
    return arr;
}

static json_t *expiring_json(struct api_ctx *c, struct error *err)
{
    json_t *all = partners_certs_json(c->st, err), *out = json_array();
    size_t i;
    json_t *v;
    if (all == NULL) {
        json_decref(out);
        return NULL;
    }
    json_array_foreach(all, i, v) {
        const char *s = json_string_value(json_object_get(v, "status"));
        if (s && (!strcmp(s, "expiring") || !strcmp(s, "expired")))
            json_array_append(out, v);
    }
    json_decref(all);
    return out;
}

static json_t *failed_json(struct api_ctx *c, struct error *err)
{
    struct store_message_query q = { .state = "failed", .limit = 10 };
    struct store_message *ms = NULL;
    size_t n = 0;
    if (store_message_search(c->st, &q, &ms, &n, err) < 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, message_json(&ms[i]));
    store_messages_free(ms, n);
    return arr;
}

int api_dashboard(struct api_ctx *c)
{
    struct error err = {0};
    int64_t now = time_now_ms();
    json_t *hours = hours_json(c, now, &err);
    json_t *conns = hours ? connectors_json(c, &err) : NULL;
    json_t *certs = conns ? expiring_json(c, &err) : NULL;
    json_t *failed = certs ? failed_json(c, &err) : NULL;
    if (failed == NULL) {
        json_decref(hours);
        json_decref(conns);
        json_decref(certs);
        return api_fail(c, 500, "internal", "%s", err.msg);
    }
    return api_ok(c, 200, json_pack("{s:I, s:o, s:o, s:o, s:o, s:o}", "now",
        (json_int_t)now, "hours", hours, "connectors", conns,
        "certificates_expiring", certs, "failed", failed, "transfers",
        progress_json()));
}

int api_transfers(struct api_ctx *c)
{
    return api_ok(c, 200, json_pack("{s:I, s:o}", "now",
                  (json_int_t)time_now_ms(), "transfers", progress_json()));
}
