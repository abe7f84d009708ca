/*
 * pg_partners.c - the PostgreSQL statements of partner_store.h beyond the
 * flow: certificates listed and added on their own, receipts (raw MDNs)
 * and refused AS2 requests folded into bursts (tables of PG_MIGRATIONS 1
 * and 2 in pg.c), beside its twin sqlite_partners.c. The profile, partners
 * and certificates written and read with the flow are pg.c's.
 *
 * Owns statement slots 424..463 (pg_internal.h) and nothing else.
 *
 * Where several nodes share the database (read committed):
 *   - store_cert_add locks the flow_generation row first (SELECT ... FOR
 *     UPDATE, as pg.c's store_flow_put does), so a certificate added on
 *     one node and a flow import on another take turns, in one lock order
 *     (no deadlock between the import's DELETE of certificates and the
 *     add's generation bump), and the bump is one UPDATE.
 *   - store_refusal_record reads the burst and then writes on what it read
 *     (count, the one "repeated" event): it first takes a transaction
 *     advisory lock keyed by (a constant, a hash of source, address and
 *     reason), so two nodes refused by the same client for the same
 *     reason take turns and fold into one burst with the right count,
 *     while other bursts do not wait (a hash collision only makes two
 *     bursts take turns).
 *
 * It stores what it is given: validation is core/partners.c's, sealing the
 * vault's; it must never see a private key in plaintext, hold a
 * transaction beyond one call, nor build SQL from data.
 */
#include "store/pg_partners.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "store/store.h"

#define SLOT_BASE 424
/* pg_advisory_xact_lock(int, int) class of refusal bursts ("Wrfs"). */
#define BURST_LOCK "1467115123"

enum { P_CERT_INS, P_CERTS_ALL, P_CERTS_OWNER, P_SET_PARTNER_CONFIG,
       P_UPD_PROFILE, P_GEN_LOCK, P_GEN_BUMP, P_RECEIPT_ADD, P_RECEIPTS,
       P_BURST_LOCK, P_BURST, P_BURST_BUMP, P_BURST_INS, P_REFUSED_INS,
       P_MSG_TOUCH, P_EVT_INS, P_EVT_SET, P_LAST };
_Static_assert(SLOT_BASE + P_LAST <= 464, "pg_partners.c owns slots 424..463");

#define CERT_COLS "owner, id, subject, not_before, not_after, use_from, der," \
                  " key_sealed"
static const char *const SQL_PARTNERS[P_LAST] = {
    [P_CERT_INS] = "INSERT INTO certificates(" CERT_COLS ")"
        " VALUES($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT(owner, id) DO UPDATE SET use_from = excluded.use_from,"
        " key_sealed = coalesce(excluded.key_sealed, certificates.key_sealed)",
    [P_CERTS_ALL] = "SELECT " CERT_COLS " FROM certificates"
        " ORDER BY owner, not_after, id",
    [P_CERTS_OWNER] = "SELECT " CERT_COLS " FROM certificates"
        " WHERE owner = $1 ORDER BY not_after, id",
    [P_SET_PARTNER_CONFIG] = "UPDATE partners SET config = $2"
        " WHERE name = $1",
    [P_UPD_PROFILE] = "UPDATE settings SET value = $2"
        " WHERE key = 'profile' AND $1::text = ''",
    [P_GEN_LOCK] = "SELECT value FROM settings"
        " WHERE key = 'flow_generation' FOR UPDATE",
    [P_GEN_BUMP] = "UPDATE settings SET value = (value::bigint + 1)::text"
        " WHERE key = 'flow_generation'",
    [P_RECEIPT_ADD] = "INSERT INTO receipts(message_id, direction, at,"
        " as2_message_id, original_message_id, headers, body)"
        " VALUES($1, $2, $3, $4, $5, $6, $7)",
    [P_RECEIPTS] = "SELECT id, message_id, direction, at,"
        " as2_message_id, original_message_id, headers, body FROM receipts"
        " WHERE message_id = $1 ORDER BY id",
    /* one burst (source, address, reason) at a time, whatever the node */
    [P_BURST_LOCK] = "SELECT pg_advisory_xact_lock(" BURST_LOCK ","
        " hashtext($1::text || chr(10) || $2::text || chr(10) || $3::text))",
    [P_BURST] = "SELECT message_id, count, event_id FROM refusals"
        " WHERE source = $1 AND address = $2 AND reason = $3"
        " AND last_at >= $4 ORDER BY last_at DESC LIMIT 1",
    [P_BURST_BUMP] = "UPDATE refusals SET count = count + 1,"
        " last_at = $2, event_id = $3 WHERE message_id = $1",
    [P_BURST_INS] = "INSERT INTO refusals(message_id, source, address,"
        " reason, count, first_at, last_at) VALUES($1, $2, $3, $4, 1, $5, $5)",
    [P_REFUSED_INS] = "INSERT INTO messages(id, created_at, updated_at,"
        " source, size, state) VALUES($1, $2, $2, $3, 0, 'refused')",
    [P_MSG_TOUCH] = "UPDATE messages SET updated_at = $2 WHERE id = $1",
    [P_EVT_INS] = "INSERT INTO events(message_id, hop_id, at, level,"
        " text) VALUES($1, 0, $2, $3, $4) RETURNING id",
    [P_EVT_SET] = "UPDATE events SET at = $2, text = $3 WHERE id = $1",
};

static PGresult *run(struct pg_store *p, int i, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, SLOT_BASE + i, SQL_PARTNERS[i], a, what, err);
}

static int run_done(struct pg_store *p, int i, const struct pg_args *a,
                    const char *what, struct error *err)
{
    return pg_run_done(p, SLOT_BASE + i, SQL_PARTNERS[i], a, what, NULL,
                       err);
}

/* ---- certificates ------------------------------------------------------- */

int pg_cert_write(struct pg_store *p, const struct store_cert *c,
                  struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, c->owner);
    pg_arg_text(&a, c->id);
    pg_arg_text(&a, c->subject);
    pg_arg_int(&a, c->not_before);
    pg_arg_int(&a, c->not_after);
    pg_arg_int(&a, c->use_from);
    pg_arg_blob(&a, c->der, c->der_len);
    if (c->key)
        pg_arg_blob(&a, c->key, c->key_len);
    else
        pg_arg_text(&a, NULL);
    return run_done(p, P_CERT_INS, &a, "store a certificate", err);
}

static int cert_row(const PGresult *r, int i, int with_keys,
                    struct store_cert *c)
{
    memset(c, 0, sizeof(*c));
    c->owner = pg_val_dup(r, i, 0);
    snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(r, i, 1));
    c->subject = pg_val_dup(r, i, 2);
    c->not_before = pg_val_int(r, i, 3);
    c->not_after = pg_val_int(r, i, 4);
    c->use_from = pg_val_int(r, i, 5);
    c->der = pg_val_blob(r, i, 6, &c->der_len);
    if (with_keys && !PQgetisnull(r, i, 7) &&
        (c->key = pg_val_blob(r, i, 7, &c->key_len)) == NULL)
        return -1;
    return (c->owner && c->subject && c->der) ? 0 : -1;
}

int pgs_certs_list(struct pg_store *p, const char *owner, int with_keys,
                   struct store_cert **out, size_t *n, struct error *err)
{
    struct pg_args a = {0};
    *out = NULL;
    *n = 0;
    if (owner)
        pg_arg_text(&a, owner);
    PGresult *r = run(p, owner ? P_CERTS_OWNER : P_CERTS_ALL, &a,
                      "list certificates", err);
    if (r == NULL)
        return -1;
    size_t rows = (size_t)PQntuples(r);
    struct store_cert *c = calloc(rows + 1, sizeof(*c));
    int bad = c == NULL;
    size_t k;
    for (k = 0; !bad && k < rows; k++)
        bad = cert_row(r, (int)k, with_keys, &c[k]) < 0;
    PQclear(r);
    if (bad) {
        store_certs_free(c, k);
        return error_set(err, "out of memory");
    }
    *out = c;
    *n = rows;
    return 0;
}

static int cert_add_tx(struct pg_store *p, const struct store_cert *c,
                       const char *partner_config, struct error *err)
{
    if (run_done(p, P_GEN_LOCK, NULL, "lock the flow", err) < 0 ||
        pg_cert_write(p, c, err) < 0)
        return -1;
    if (partner_config) {
        struct pg_args a = {0};
        pg_arg_text(&a, c->owner);
        pg_arg_text(&a, partner_config);
        if (run_done(p, c->owner[0] ? P_SET_PARTNER_CONFIG : P_UPD_PROFILE,
                     &a, "update the partner", err) < 0)
            return -1;
    }
    /* a running server reloads and uses the new certificate or key */
    return run_done(p, P_GEN_BUMP, NULL, "bump flow generation", err);
}

int pgs_cert_add(struct pg_store *p, const struct store_cert *c,
                 const char *partner_config, struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (cert_add_tx(p, c, partner_config, err) < 0)
        return pg_tx_fail(p);
    return pg_tx_end(p, err);
}

/* ---- receipts -------------------------------------------------------------- */

int pgs_receipt_add(struct pg_store *p, const struct store_receipt *r,
                    struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, r->message_id);
    pg_arg_text(&a, r->direction);
    pg_arg_int(&a, r->at);
    pg_arg_text(&a, r->as2_message_id);
    pg_arg_text(&a, r->original_message_id);
    pg_arg_text(&a, r->headers);
    pg_arg_blob(&a, r->body ? (const void *)r->body : "", r->len);
    return run_done(p, P_RECEIPT_ADD, &a, "store a receipt", err);
}

static int receipt_row(const PGresult *res, int i, int with_body,
                       struct store_receipt *r)
{
    memset(r, 0, sizeof(*r));
    r->id = pg_val_int(res, i, 0);
    r->message_id = pg_val_dup(res, i, 1);
    r->direction = pg_val_dup(res, i, 2);
    r->at = pg_val_int(res, i, 3);
    r->as2_message_id = pg_val_dup(res, i, 4);
    r->original_message_id = pg_val_dup(res, i, 5);
    if (with_body) {
        r->headers = pg_val_dup(res, i, 6);
        r->body = pg_val_blob(res, i, 7, &r->len);
        if (r->len == 0) {          /* as SQLite: an empty body is NULL */
            free(r->body);
            r->body = NULL;
        }
    }
    return r->message_id && r->direction ? 0 : -1;
}

int pgs_receipts_list(struct pg_store *p, const char *message_id,
                      int with_body, struct store_receipt **out, size_t *n,
                      struct error *err)
{
    struct pg_args a = {0};
    *out = NULL;
    *n = 0;
    pg_arg_text(&a, message_id);
    PGresult *r = run(p, P_RECEIPTS, &a, "list receipts", err);
    if (r == NULL)
        return -1;
    size_t rows = (size_t)PQntuples(r);
    struct store_receipt *g = calloc(rows + 1, sizeof(*g));
    int bad = g == NULL;
    size_t k;
    for (k = 0; !bad && k < rows; k++)
        bad = receipt_row(r, (int)k, with_body, &g[k]) < 0;
    PQclear(r);
    if (bad) {
        store_receipts_free(g, k);
        return error_set(err, "out of memory");
    }
    *out = g;
    *n = rows;
    return 0;
}

/* ---- refused AS2 requests, folded into bursts ------------------------------- */

/* The new event's id, or -1 with err. */
static int64_t event_insert(struct pg_store *p, const char *msgid, int64_t at,
                            const char *level, const char *text,
                            struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, msgid);
    pg_arg_int(&a, at);
    pg_arg_text(&a, level);
    pg_arg_text(&a, text);
    PGresult *r = run(p, P_EVT_INS, &a, "insert event", err);
    if (r == NULL)
        return -1;
    int64_t id = pg_val_int(r, 0, 0);
    PQclear(r);
    return id;
}

/* Under the burst's lock: 1 and the burst (id, count, event) that r
 * continues, 0 when none. */
static int burst_find(struct pg_store *p, const struct store_refusal *r,
                      int64_t now, char id[ID_LEN + 1], int64_t *count,
                      int64_t *event_id, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, r->source);
    pg_arg_text(&a, r->address);
    pg_arg_text(&a, r->reason);
    if (run_done(p, P_BURST_LOCK, &a, "lock a burst of refusals", err) < 0)
        return -1;
    pg_arg_int(&a, now - r->window_ms);
    PGresult *res = run(p, P_BURST, &a, "look up a burst of refusals", err);
    if (res == NULL)
        return -1;
    int found = PQntuples(res) == 1;
    if (found) {
        pg_val_id(res, 0, 0, id);
        *count = pg_val_int(res, 0, 1);
        *event_id = pg_val_int(res, 0, 2);
    }
    PQclear(res);
    return found;
}

/* A new burst: the refused message, its event, the refusals row. */
static int burst_new(struct pg_store *p, const struct store_refusal *r,
                     int64_t now, char id[ID_LEN + 1], struct error *err)
{
    struct pg_args m = {0}, b = {0};
    id_new(id);
    pg_arg_text(&m, id);
    pg_arg_int(&m, now);
    pg_arg_text(&m, r->source);
    if (run_done(p, P_REFUSED_INS, &m, "insert a refused message", err) < 0 ||
        event_insert(p, id, now, "error", r->text, err) < 0)
        return -1;
    pg_arg_text(&b, id);
    pg_arg_text(&b, r->source);
    pg_arg_text(&b, r->address);
    pg_arg_text(&b, r->reason);
    pg_arg_int(&b, now);
    return run_done(p, P_BURST_INS, &b, "insert a burst of refusals", err);
}

/* One more refusal of a burst: its count, and one "repeated" event
 * (added at the second refusal, rewritten at the later ones). */
static int burst_bump(struct pg_store *p, const struct store_refusal *r,
                      int64_t now, const char *id, int64_t count,
                      int64_t event_id, struct error *err)
{
    char text[1200];
    snprintf(text, sizeof(text), "refused %lld times in all from %s (%s), "
             "the last one: %s", (long long)count, r->address, r->reason,
             r->text);
    if (event_id > 0) {
        struct pg_args e = {0};
        pg_arg_int(&e, event_id);
        pg_arg_int(&e, now);
        pg_arg_text(&e, text);
        if (run_done(p, P_EVT_SET, &e, "update event", err) < 0)
            return -1;
    } else if ((event_id = event_insert(p, id, now, "error", text,
                                        err)) < 0) {
        return -1;
    }
    struct pg_args b = {0}, t = {0};
    pg_arg_text(&b, id);
    pg_arg_int(&b, now);
    pg_arg_int(&b, event_id);
    pg_arg_text(&t, id);
    pg_arg_int(&t, now);
    if (run_done(p, P_BURST_BUMP, &b, "count a refusal", err) < 0)
        return -1;
    return run_done(p, P_MSG_TOUCH, &t, "touch a refused message", err);
}

int pgs_refusal_record(struct pg_store *p, const struct store_refusal *r,
                       char id[ID_LEN + 1], int64_t *count,
                       struct error *err)
{
    int64_t now = time_now_ms(), n = 0, event_id = 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int found = burst_find(p, r, now, id, &n, &event_id, err);
    if (found < 0 ||
        (found ? burst_bump(p, r, now, id, n + 1, event_id, err)
               : burst_new(p, r, now, id, err)) < 0)
        return pg_tx_fail(p);
    if (pg_tx_end(p, err) < 0)
        return -1;
    *count = n + 1;
    return 0;
}
