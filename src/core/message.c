/*
 * message.c - opening a message's payload for a connector (read through
 * the vault, so every byte handed out has been authenticated), and the one
 * JSON shape of a message that the CLI and the REST API both print.
 */
#include "core/message.h"

#include <stdlib.h>
#include <string.h>

#include "core/payloads.h"
#include "core/wharf.h"
#include "store/job_store.h"
#include "store/partner_store.h"
#include "store/retention_store.h"
#include "store/store.h"
#include "vault/vault.h"

_Static_assert(MESSAGE_PAYLOAD_CHUNK == PAYLOAD_SEGMENT,
               "message.h's chunk is the vault's segment");

struct payload_reader *message_payload_open(const struct message *m,
                                            struct error *err)
{
    if (m->payload_path == NULL) {
        error_set(err, "message %s has no payload", m->id);
        return NULL;
    }
    return wharf_payload_open(m->wharf, m->payload_path, m->id, err);
}

ssize_t message_payload_read(struct payload_reader *r, void *buf, size_t n,
                             struct error *err)
{
    return payload_read(r, buf, n, err);
}

void message_payload_close(struct payload_reader *r)
{
    payload_close(r);
}

json_t *message_json(const struct store_message *m)
{
    return json_pack("{s:s, s:I, s:I, s:s, s:s?, s:I, s:s?, s:s}", "id", m->id,
                     "created_at", (json_int_t)m->created_at, "updated_at",
                     (json_int_t)m->updated_at, "source",
                     m->source ? m->source : "", "filename", m->filename,
                     "size", (json_int_t)m->size, "sha256", m->sha256,
                     "state", m->state ? m->state : "");
}

static json_t *hops_json(const struct store_hop *h, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:i, s:I, s:s?,"
            " s:s?}", "id", (json_int_t)h[i].id, "connector", h[i].connector,
            "state", h[i].state, "attempts", h[i].attempts, "next_at",
            (json_int_t)h[i].next_at, "last_error", h[i].last_error,
            "receipt", h[i].receipt));
    return arr;
}

static json_t *events_json(const struct store_event *e, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:s}", "at",
            (json_int_t)e[i].at, "hop", (json_int_t)e[i].hop_id, "level",
            e[i].level, "text", e[i].text));
    return arr;
}

json_t *message_jobs_json(struct store *st, const char *id,
                          struct error *err)
{
    struct store_job *j;
    size_t n;
    if (store_message_jobs(st, id, &j, &n, err) < 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:s, s:i,"
            " s:I, s:I, s:I, s:s?}", "id", j[i].id, "kind", j[i].kind,
            "connector", j[i].connector, "hop", (json_int_t)j[i].hop_id,
            "state", j[i].state, "attempts", j[i].attempts, "due_at",
            (json_int_t)j[i].due_at, "give_up_at", (json_int_t)j[i].give_up_at,
            "created_at", (json_int_t)j[i].created_at, "last_error",
            j[i].last_error));
    store_jobs_free(j, n);
    return arr;
}

json_t *message_receipts_json(struct store *st, const char *id,
                              struct error *err)
{
    struct store_receipt *r;
    size_t n;
    if (store_receipts_list(st, id, 1, &r, &n, err) < 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:s, s:I, s:s?, s:s?, "
            "s:I}", "n", (json_int_t)(i + 1), "direction", r[i].direction,
            "at", (json_int_t)r[i].at, "mdn_message_id", r[i].as2_message_id,
            "original_message_id", r[i].original_message_id,
            "bytes", (json_int_t)(strlen(r[i].headers ? r[i].headers : "") +
                                  2 + r[i].len)));
    store_receipts_free(r, n);
    return arr;
}

/* The legal hold on message id (R9), or null. */
static json_t *hold_json(struct store *st, const char *id)
{
    struct error err = {0};
    struct store_hold h;
    if (store_hold_get(st, id, &h, &err) != 0)
        return json_null();
    json_t *o = json_pack("{s:I, s:s, s:o}", "at", (json_int_t)h.at,
                          "actor", h.actor ? h.actor : "", "reason",
                          h.reason ? json_string(h.reason) : json_null());
    store_hold_clear(&h);
    return o;
}

json_t *message_detail_json(struct store *st, const struct store_message *m,
                            struct error *err)
{
    struct store_hop *h = NULL;
    struct store_event *e = NULL;
    size_t nh = 0, ne = 0;
    json_t *o = NULL;
    if (store_message_hops(st, m->id, &h, &nh, err) == 0 &&
        store_message_events(st, m->id, &e, &ne, err) == 0) {
        o = message_json(m);
        json_object_set_new(o, "hops", hops_json(h, nh));
        json_object_set_new(o, "events", events_json(e, ne));
        json_t *rc = message_receipts_json(st, m->id, err);
        json_object_set_new(o, "receipts", rc ? rc : json_array());
        json_object_set_new(o, "legal_hold", hold_json(st, m->id));
        json_t *jobs = message_jobs_json(st, m->id, err);
        json_object_set_new(o, "jobs", jobs ? jobs : json_array());
    }
    store_hops_free(h, nh);
    store_events_free(e, ne);
    return o;
}

/* ---- resend ---------------------------------------------------------------- */

int message_resend(struct store *st, const char *id, const char *who,
                   int *requeued, int *jobs, struct error *err)
{
    struct store_message m;
    int found = store_message_get(st, id, &m, err);
    if (found != 0) {
        store_message_clear(&m);
        return found;
    }
    struct store_flow f;
    if (store_flow_get(st, &f, err) < 0) {
        store_message_clear(&m);
        return -1;
    }
    const char **next = calloc(f.nlinks + 1, sizeof(*next));
    size_t nnext = 0;
    for (size_t i = 0; next && i < f.nlinks; i++)
        if (m.source && strcmp(f.links[i].src, m.source) == 0)
            next[nnext++] = f.links[i].dst;
    int rc = next ? store_message_resend(st, id, who, next, nnext, requeued,
                                         jobs, err)
                  : error_set(err, "out of memory");
    free(next);
    store_flow_clear(&f);
    store_message_clear(&m);
    return rc;
}
