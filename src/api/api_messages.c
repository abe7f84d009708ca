/*
 * api_messages.c - messages (list, detail, payload download, resend,
 * erase: security/retention.h, refused for a message under a legal hold)
 * and the audit trail (list, verify). Payload downloads, resends and
 * erasures are audited. A payload is streamed from the vault: every byte
 * sent was authenticated first, and memory does not grow with its size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "store/partner_store.h"
#include "audit/audit.h"
#include "core/message.h"
#include "core/wharf.h"
#include "net/server.h"
#include "security/detectors.h"
#include "security/retention.h"
#include "store/audit_store.h"
#include "store/store.h"
#include "vault/vault.h"

/* A whole number query parameter in [min, max], def when absent; -1 when
 * malformed (reply sent). */
static long long query_num(struct api_ctx *c, const char *name, long long def,
                           long long min, long long max)
{
    char buf[32];
    const char *v = api_query(c, name, buf, sizeof(buf));
    if (v == NULL)
        return def;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*v && !*end && x >= min && x <= max)
        return x;
    api_fail(c, 400, "invalid", "%s must be a whole number from %lld to %lld",
             name, min, max);
    return -1;
}

int api_messages(struct api_ctx *c)
{
    char ob[32];
    if (api_query(c, "offset", ob, sizeof(ob)) == NULL)
        return api_message_search(c);       /* keyset paging, filters */
    struct error err = {0};
    char sb[32];
    const char *state = api_query(c, "state", sb, sizeof(sb));
    long long limit = query_num(c, "limit", 100, 1, 10000);
    long long offset = limit < 0 ? -1 : query_num(c, "offset", 0, 0, 1LL << 40);
    if (limit < 0 || offset < 0)
        return 0;
    if (state != NULL && !store_message_state_known(state))
        return api_fail(c, 400, "invalid", "unknown state");
    struct store_message *ms;
    size_t n;
    if (store_message_list(c->st, state, limit, offset, &ms, &n, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, message_json(&ms[i]));
    store_messages_free(ms, n);
    return api_ok(c, 200, json_pack("{s:o, s:I, s:I}", "messages", arr,
                  "limit", (json_int_t)limit, "offset", (json_int_t)offset));
}

/* Load the message named by the path; 0, or the reply was sent (1). */
static int load_message(struct api_ctx *c, struct store_message *m)
{
    struct error err = {0};
    int rc = id_valid(c->param[0]) ? store_message_get(c->st, c->param[0], m,
                                                       &err) : 1;
    if (rc == 0)
        return 0;
    if (rc > 0)
        api_fail(c, 404, "not_found", "no such message");
    else
        api_fail(c, 500, "internal", "%s", err.msg);
    return 1;
}

int api_message_get(struct api_ctx *c)
{
    struct error err = {0};
    struct store_message m;
    if (load_message(c, &m))
        return 0;
    json_t *o = message_detail_json(c->st, &m, &err);
    store_message_clear(&m);
    return o ? api_ok(c, 200, o) : api_fail(c, 500, "internal", "%s", err.msg);
}

static int stream_payload(struct api_ctx *c, const struct store_message *m)
{
    struct error err = {0};
    struct message msg = { .source = m->source, .filename = m->filename,
        .size = m->size, .sha256 = m->sha256, .payload_path = m->payload_path,
        .wharf = c->w };
    memcpy(msg.id, m->id, sizeof(msg.id));
    struct payload_reader *r = message_payload_open(&msg, &err);
    if (r == NULL)
        return api_fail(c, 409, "payload_unreadable", "%s", err.msg);
    unsigned char *buf = malloc(PAYLOAD_SEGMENT);
    if (buf == NULL) {
        payload_close(r);
        return api_fail(c, 503, "unavailable", "out of memory");
    }
    /* Read the first segment before the head: a tampered start is a clean
     * error reply, not a broken download. */
    ssize_t got = payload_read(r, buf, PAYLOAD_SEGMENT, &err);
    if (got < 0) {
        free(buf);
        payload_close(r);
        return api_fail(c, 409, "payload_unreadable", "%s", err.msg);
    }
    net_reply_start(c->req, 200, "application/octet-stream", m->size);
    while (got > 0 && net_reply_write(c->req, buf, (size_t)got) == 0)
        got = payload_read(r, buf, PAYLOAD_SEGMENT, &err);
    free(buf);
    payload_close(r);
    return 0;       /* a later failure cuts the stream short: detectable */
}

int api_message_payload(struct api_ctx *c)
{
    struct store_message m;
    if (load_message(c, &m))
        return 0;
    if (m.payload_path == NULL) {
        store_message_clear(&m);
        return api_fail(c, 410, "erased", "the payload was erased");
    }
    api_audit(c, "payload.download", m.id, m.filename);
    int rc = stream_payload(c, &m);
    store_message_clear(&m);
    return rc;
}

int api_message_resend(struct api_ctx *c)
{
    struct error err = {0};
    int n = 0, jobs = 0;
    int rc = id_valid(c->param[0]) ? message_resend(c->st, c->param[0],
                                     c->actor.name, &n, &jobs, &err) : 1;
    if (rc == 2)
        return api_fail(c, 409, "nothing_to_resend", "%s", err.msg);
    if (rc > 0)
        return api_fail(c, 404, "not_found", "no such message");
    if (rc < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    api_audit(c, "message.resend", c->param[0], NULL);
    return api_ok(c, 200, json_pack("{s:s, s:i, s:i}", "status", "requeued",
                                    "hops", n, "jobs", jobs));
}

int api_message_erase(struct api_ctx *c)
{
    struct error err = {0};
    int64_t bytes = 0;
    char detail[64];
    int rc = id_valid(c->param[0]) ? retention_erase(c->w, c->st, c->param[0],
                                     c->actor.name, &bytes, &err) : 1;
    if (rc == 1)
        return api_fail(c, 404, "not_found", "no such message");
    if (rc == 2)
        return api_fail(c, 409, "legal_hold", "%s", err.msg);
    if (rc != 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    snprintf(detail, sizeof(detail), "bytes=%lld", (long long)bytes);
    api_audit(c, "message.erase", c->param[0], detail);
    return api_ok(c, 200, json_pack("{s:s, s:I}", "status", "erased",
                                    "bytes", (json_int_t)bytes));
}

/* ---- audit -------------------------------------------------------------------------- */

int api_audit_list(struct api_ctx *c)
{
    struct error err = {0};
    long long after = query_num(c, "after", 0, 0, 1LL << 62);
    long long limit = after < 0 ? -1 : query_num(c, "limit", 100, 1, 1000);
    if (after < 0 || limit < 0)
        return 0;
    struct store_audit_row *rows;
    size_t n;
    if (store_audit_list(c->st, after, (size_t)limit, &rows, &n, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:s?, s:s, s:s?,"
            " s:s?, s:s}", "seq", (json_int_t)rows[i].seq, "at",
            (json_int_t)rows[i].at, "actor", rows[i].actor, "address",
            rows[i].address, "action", rows[i].action, "target",
            rows[i].target, "detail", rows[i].detail, "hash", rows[i].hash));
    store_audit_rows_free(rows, n);
    return api_ok(c, 200, json_pack("{s:o}", "entries", arr));
}

int api_audit_verify(struct api_ctx *c)
{
    struct error err = {0};
    struct audit_report r;
    memset(&r, 0, sizeof(r));
    int rc = audit_verify(c->st, c->w->vault, &r, &err);
    if (rc < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    detect_audit_result(c->st, rc, &r);     /* a break is an alert (R19) */
    return api_ok(c, 200, json_pack("{s:b, s:I, s:I, s:I, s:s}", "intact",
                  rc == 0, "entries", (json_int_t)r.entries, "checkpoints",
                  (json_int_t)r.checkpoints, "first_bad",
                  (json_int_t)r.first_bad, "problem", r.problem));
}

/* GET /api/v1/messages/{id}/receipts/{n}: the raw MDN, headers then body,
 * as it was sent or received (the non-repudiation record). */
int api_message_receipt(struct api_ctx *c)
{
    struct store_message m;
    if (load_message(c, &m))
        return 0;
    store_message_clear(&m);
    struct error err = {0};
    struct store_receipt *r;
    size_t n;
    char *end = NULL;
    long k = strtol(c->param[1], &end, 10);
    if (store_receipts_list(c->st, c->param[0], 1, &r, &n, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    int rc;
    if (end == c->param[1] || *end || k < 1 || (size_t)k > n) {
        rc = api_fail(c, 404, "not_found", "no receipt %s", c->param[1]);
    } else {
        const struct store_receipt *x = &r[k - 1];
        size_t hl = strlen(x->headers ? x->headers : "");
        char *raw = malloc(hl + 2 + x->len + 1);
        if (raw == NULL) {
            rc = api_fail(c, 500, "internal", "out of memory");
        } else {
            memcpy(raw, x->headers ? x->headers : "", hl);
            memcpy(raw + hl, "\r\n", 2);
            if (x->len)
                memcpy(raw + hl + 2, x->body, x->len);
            api_audit(c, "receipt.download", c->param[0], c->param[1]);
            rc = net_reply(c->req, 200, "message/rfc822", raw, hl + 2 + x->len);
            free(raw);
        }
    }
    store_receipts_free(r, n);
    return rc;
}
