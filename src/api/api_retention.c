/*
 * api_retention.c - retention and erasure over the API (R9), the same
 * security/retention.h functions as `wharf message hold|unhold|purge` and
 * `wharf partner erase`:
 *   POST   /api/v1/messages/{id}/hold      {"reason": optional}
 *   DELETE /api/v1/messages/{id}/hold
 *   POST   /api/v1/messages/purge          {"before": DATE, "dry_run": bool}
 *   POST   /api/v1/partners/{name}/erase
 * (permission message.erase: administrators). Every change is audited
 * with its counts; a dry run changes nothing and is not audited.
 *
 * Owns nothing beyond the call. Must never quote a request body in an
 * error, or erase or purge a message under a legal hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/wharf.h"
#include "security/retention.h"
#include "security/upkeep.h"
#include "util/id.h"

#define REASON_MAX 500

/* Whether the body (if any) is an object of only the members names
 * lists. */
static int body_members_ok(const struct api_ctx *c,
                           const char *const *names)
{
    const char *k;
    json_t *v;
    if (c->body == NULL)
        return 1;
    if (!json_is_object(c->body))
        return 0;
    json_object_foreach(c->body, k, v) {
        int known = 0;
        for (int i = 0; names[i]; i++)
            known |= strcmp(k, names[i]) == 0;
        if (!known)
            return 0;
    }
    return 1;
}

int api_message_hold(struct api_ctx *c)
{
    static const char *const members[] = { "reason", NULL };
    struct error err = {0};
    const char *reason = api_body_str(c, "reason");
    json_t *r = c->body ? json_object_get(c->body, "reason") : NULL;
    if (!body_members_ok(c, members) || (r && !json_is_string(r)) ||
        (reason && (strlen(reason) > REASON_MAX || strchr(reason, '\n'))))
        return api_fail(c, 400, "invalid", "send {\"reason\": one line of "
                        "at most %d characters} or no body", REASON_MAX);
    int rc = id_valid(c->param[0]) ? retention_hold(c->st, c->param[0],
                                     c->actor.name, reason, &err) : 1;
    if (rc == 1)
        return api_fail(c, 404, "not_found", "no such message");
    if (rc < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    if (rc == 0)
        api_audit(c, "message.hold", c->param[0], reason ? reason : "-");
    return api_ok(c, 200, json_pack("{s:s, s:b}", "status", "held",
                                    "already", rc == 2));
}

int api_message_unhold(struct api_ctx *c)
{
    struct error err = {0};
    int rc = id_valid(c->param[0]) ? retention_unhold(c->st, c->param[0],
                                                      &err) : 1;
    if (rc == 1)
        return api_fail(c, 404, "not_found", "no legal hold on such a "
                        "message");
    if (rc < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    api_audit(c, "message.unhold", c->param[0], NULL);
    return api_ok(c, 200, json_pack("{s:s}", "status", "released"));
}

static json_t *purge_json(const struct retention_result *r, int dry)
{
    return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "dry_run", dry,
                     "messages", (json_int_t)r->messages, "bytes",
                     (json_int_t)r->bytes, "held", (json_int_t)r->held,
                     "shredded", (json_int_t)r->shredded, "failed",
                     (json_int_t)r->failed, "resumed",
                     (json_int_t)r->resumed);
}

int api_messages_purge(struct api_ctx *c)
{
    static const char *const members[] = { "before", "dry_run", NULL };
    struct error err = {0};
    const char *before = api_body_str(c, "before");
    json_t *dry = c->body ? json_object_get(c->body, "dry_run") : NULL;
    if (!body_members_ok(c, members) || (dry && !json_is_boolean(dry)) ||
        (c->body && json_object_get(c->body, "before") && !before))
        return api_fail(c, 400, "invalid", "send {\"before\": "
                        "\"YYYY-MM-DD\" (optional: else each connector's "
                        "retention_days), \"dry_run\": true|false}");
    struct wharf_conf *conf = malloc(sizeof(*conf));
    if (conf == NULL)
        return api_fail(c, 503, "unavailable", "out of memory");
    upkeep_get_conf(conf);
    struct retention_plan p = { .default_days = conf->retention_days,
                                .dry_run = json_is_true(dry),
                                .now = time_now_ms() };
    free(conf);
    if (before && retention_parse_date(before, &p.before, &err) < 0)
        return api_fail(c, 400, "invalid", "before: %s", err.msg);
    struct retention_result r;
    int rc = retention_purge(c->w, c->st, &p, &r, &err);
    if (!p.dry_run) {
        char detail[256];
        retention_detail(&p, &r, rc == 0, detail, sizeof(detail));
        api_audit(c, "retention.purge", "messages", detail);
    }
    if (rc < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    return api_ok(c, 200, purge_json(&r, p.dry_run));
}

int api_partner_erase(struct api_ctx *c)
{
    struct error err = {0};
    struct retention_result r;
    char *conns = NULL, detail[1024];
    int rc = retention_erase_partner(c->w, c->st, c->param[0], c->actor.name,
                                     &r, &conns, &err);
    if (rc == 1)
        return api_fail(c, 404, "not_found", "no such partner");
    snprintf(detail, sizeof(detail), "erased=%lld bytes=%lld held_kept=%lld "
             "connectors=%s%s", (long long)r.messages, (long long)r.bytes,
             (long long)r.held, conns && conns[0] ? conns : "-",
             rc == 0 ? "" : " (stopped by an error)");
    free(conns);
    api_audit(c, "partner.erase", c->param[0], detail);
    if (rc < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    return api_ok(c, 200, json_pack("{s:s, s:I, s:I, s:I}", "status",
                  "erased", "messages", (json_int_t)r.messages, "bytes",
                  (json_int_t)r.bytes, "held", (json_int_t)r.held));
}
