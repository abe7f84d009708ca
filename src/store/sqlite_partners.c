/*
 * sqlite_partners.c - the SQLite statements of partner_store.h: the AS2
 * profile (setting "profile"), partners and certificates (tables of
 * migration 4 in sqlite.c), receipts (5) and refused AS2 requests folded
 * into bursts (6).
 *
 * Owns statement cache slots 144..175 of store_stmt_ext and nothing else.
 * Every statement is a constant string with bound parameters. It stores
 * what it is given: validation is core/partners.c's, sealing the vault's;
 * it must never see a private key in plaintext nor build SQL from data.
 */
#include "store/partner_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_partners.h"
#include "store/store.h"
#include "store/store_internal.h"

enum { P_DEL_PARTNERS = 144, P_DEL_CERTS, P_DEL_PROFILE, P_SET_PROFILE,
       P_INS_PARTNER, P_INS_CERT, P_GET_PROFILE, P_ALL_PARTNERS,
       P_CERTS_ALL, P_CERTS_OWNER, P_SET_PARTNER_CONFIG, P_UPD_PROFILE,
       P_RECEIPT_ADD, P_RECEIPTS, P_GEN_BUMP,
       P_BURST, P_BURST_BUMP, P_BURST_INS, P_REFUSED_INS, P_MSG_TOUCH,
       P_EVT_INS, P_EVT_SET, P_LAST };
_Static_assert(P_LAST <= 176, "sqlite_partners.c owns slots 144..175");

#define CERT_COLS "owner, id, subject, not_before, not_after, use_from, der," \
                  " key_sealed"
static const char *const SQL_PARTNERS[P_LAST - 144] = {
    [P_DEL_PARTNERS - 144] = "DELETE FROM partners",
    [P_DEL_CERTS - 144] = "DELETE FROM certificates",
    [P_DEL_PROFILE - 144] = "DELETE FROM settings WHERE key = 'profile'",
    [P_SET_PROFILE - 144] = "INSERT INTO settings(key, value)"
        " VALUES('profile', ?1)",
    [P_INS_PARTNER - 144] = "INSERT INTO partners(name, as2_id, config)"
        " VALUES(?1, ?2, ?3)",
    [P_INS_CERT - 144] = "INSERT INTO certificates(" CERT_COLS ")"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT(owner, id) DO UPDATE SET use_from = excluded.use_from,"
        " key_sealed = coalesce(excluded.key_sealed, key_sealed)",
    [P_GET_PROFILE - 144] = "SELECT value FROM settings WHERE key = 'profile'",
    [P_ALL_PARTNERS - 144] = "SELECT name, as2_id, config FROM partners"
        " ORDER BY name",
    [P_CERTS_ALL - 144] = "SELECT " CERT_COLS " FROM certificates"
        " ORDER BY owner, not_after, id",
    [P_CERTS_OWNER - 144] = "SELECT " CERT_COLS " FROM certificates"
        " WHERE owner = ?1 ORDER BY not_after, id",
    [P_SET_PARTNER_CONFIG - 144] = "UPDATE partners SET config = ?2"
        " WHERE name = ?1",
    [P_UPD_PROFILE - 144] = "UPDATE settings SET value = ?2"
        " WHERE key = 'profile' AND ?1 = ''",
    [P_GEN_BUMP - 144] = "UPDATE settings SET value = CAST(value AS INTEGER)"
        " + 1 WHERE key = 'flow_generation'",
    [P_RECEIPT_ADD - 144] = "INSERT INTO receipts(message_id, direction, at,"
        " as2_message_id, original_message_id, headers, body)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [P_RECEIPTS - 144] = "SELECT id, message_id, direction, at,"
        " as2_message_id, original_message_id, headers, body FROM receipts"
        " WHERE message_id = ?1 ORDER BY id",
    [P_BURST - 144] = "SELECT message_id, count, event_id FROM refusals"
        " WHERE source = ?1 AND address = ?2 AND reason = ?3"
        " AND last_at >= ?4 ORDER BY last_at DESC LIMIT 1",
    [P_BURST_BUMP - 144] = "UPDATE refusals SET count = count + 1,"
        " last_at = ?2, event_id = ?3 WHERE message_id = ?1",
    [P_BURST_INS - 144] = "INSERT INTO refusals(message_id, source, address,"
        " reason, count, first_at, last_at) VALUES(?1, ?2, ?3, ?4, 1, ?5, ?5)",
    [P_REFUSED_INS - 144] = "INSERT INTO messages(id, created_at, updated_at,"
        " source, size, state) VALUES(?1, ?2, ?2, ?3, 0, 'refused')",
    [P_MSG_TOUCH - 144] = "UPDATE messages SET updated_at = ?2 WHERE id = ?1",
    [P_EVT_INS - 144] = "INSERT INTO events(message_id, hop_id, at, level,"
        " text) VALUES(?1, 0, ?2, ?3, ?4)",
    [P_EVT_SET - 144] = "UPDATE events SET at = ?2, text = ?3 WHERE id = ?1",
};

static sqlite3_stmt *p_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_PARTNERS[slot - 144], err);
}

static int p_simple(struct store *s, int slot, const char *what,
                    struct error *err)
{
    sqlite3_stmt *st = p_stmt(s, slot, err);
    return st ? store_step_done(s, st, err, what) : -1;
}

static int cert_insert(struct store *s, const struct store_cert *c,
                       struct error *err)
{
    sqlite3_stmt *st = p_stmt(s, P_INS_CERT, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, c->owner);
    store_bind_text(st, 2, c->id);
    store_bind_text(st, 3, c->subject);
    sqlite3_bind_int64(st, 4, c->not_before);
    sqlite3_bind_int64(st, 5, c->not_after);
    sqlite3_bind_int64(st, 6, c->use_from);
    sqlite3_bind_blob(st, 7, c->der, (int)c->der_len, SQLITE_STATIC);
    if (c->key)
        sqlite3_bind_blob(st, 8, c->key, (int)c->key_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    return store_step_done(s, st, err, "store a certificate");
}

int store_partners_write(struct store *s, const struct store_flow *f,
                         struct error *err)
{
    if (p_simple(s, P_DEL_PARTNERS, "delete partners", err) < 0 ||
        p_simple(s, P_DEL_CERTS, "delete certificates", err) < 0 ||
        p_simple(s, P_DEL_PROFILE, "delete the profile", err) < 0)
        return -1;
    if (f->profile) {
        sqlite3_stmt *st = p_stmt(s, P_SET_PROFILE, err);
        if (st == NULL)
            return -1;
        store_bind_text(st, 1, f->profile);
        if (store_step_done(s, st, err, "store the profile") < 0)
            return -1;
    }
    for (size_t i = 0; i < f->npartners; i++) {
        sqlite3_stmt *st = p_stmt(s, P_INS_PARTNER, err);
        if (st == NULL)
            return -1;
        store_bind_text(st, 1, f->partners[i].name);
        store_bind_text(st, 2, f->partners[i].as2_id);
        store_bind_text(st, 3, f->partners[i].config);
        if (store_step_done(s, st, err, "store a partner") < 0)
            return -1;
    }
    for (size_t i = 0; i < f->ncerts; i++)
        if (cert_insert(s, &f->certs[i], err) < 0)
            return -1;
    return 0;
}

int store_partners_read(struct store *s, struct store_flow *f,
                        struct error *err)
{
    sqlite3_stmt *st = p_stmt(s, P_GET_PROFILE, err);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        f->profile = store_col_dup(st, 0);
    sqlite3_reset(st);      /* a statement left on a row pins a snapshot */
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read the profile");
    if ((st = p_stmt(s, P_ALL_PARTNERS, err)) == NULL)
        return -1;
    int oom = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_partner *grown = realloc(f->partners, (f->npartners + 1)
                                              * sizeof(*grown));
        if (grown == NULL) {
            oom = 1;
            break;
        }
        f->partners = grown;
        struct store_partner *p = &f->partners[f->npartners++];
        p->name = store_col_dup(st, 0);
        p->as2_id = store_col_dup(st, 1);
        p->config = store_col_dup(st, 2);
        oom = !p->name || !p->as2_id || !p->config;
    }
    sqlite3_reset(st);
    if (oom)
        return error_set(err, "out of memory");
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "read partners");
}

static unsigned char *blob_dup(sqlite3_stmt *st, int col, size_t *len)
{
    int n = sqlite3_column_bytes(st, col);
    const void *p = sqlite3_column_blob(st, col);
    *len = 0;
    if (p == NULL || n <= 0)
        return NULL;
    unsigned char *out = malloc((size_t)n);
    if (out) {
        memcpy(out, p, (size_t)n);
        *len = (size_t)n;
    }
    return out;
}

static int cert_row(sqlite3_stmt *st, int with_keys, struct store_cert *c)
{
    memset(c, 0, sizeof(*c));
    c->owner = store_col_dup(st, 0);
    const char *id = (const char *)sqlite3_column_text(st, 1);
    snprintf(c->id, sizeof(c->id), "%s", id ? id : "");
    c->subject = store_col_dup(st, 2);
    c->not_before = sqlite3_column_int64(st, 3);
    c->not_after = sqlite3_column_int64(st, 4);
    c->use_from = sqlite3_column_int64(st, 5);
    c->der = blob_dup(st, 6, &c->der_len);
    if (with_keys && sqlite3_column_type(st, 7) != SQLITE_NULL &&
        (c->key = blob_dup(st, 7, &c->key_len)) == NULL)
        return -1;
    return (c->owner && c->subject && c->der) ? 0 : -1;
}

int store_certs_list(struct store *s, const char *owner, int with_keys,
                     struct store_cert **out, size_t *n, struct error *err)
{
    if (store_pg(s))
        return pgs_certs_list(store_pg(s), owner, with_keys, out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = p_stmt(s, owner ? P_CERTS_OWNER : P_CERTS_ALL, err);
    if (st == NULL)
        return -1;
    if (owner)
        store_bind_text(st, 1, owner);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_cert *grown = realloc(*out, (*n + 1) * sizeof(*grown));
        if (grown == NULL || cert_row(st, with_keys, &grown[*n]) < 0) {
            if (grown) {
                *out = grown;
                store_cert_clear(&grown[(*n)++]);
            }
            store_certs_free(*out, *n);
            *out = NULL;
            *n = 0;
            sqlite3_reset(st);
            return error_set(err, "out of memory");
        }
        *out = grown;
        (*n)++;
    }
    if (rc != SQLITE_DONE) {
        store_certs_free(*out, *n);
        *out = NULL;
        *n = 0;
        sqlite3_reset(st);
        return store_db_error(s, err, "list certificates");
    }
    return 0;
}

int store_cert_add(struct store *s, const struct store_cert *c,
                   const char *partner_config, struct error *err)
{
    if (store_pg(s))
        return pgs_cert_add(store_pg(s), c, partner_config, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (cert_insert(s, c, err) < 0)
        return store_tx_fail(s);
    if (partner_config) {
        sqlite3_stmt *st = p_stmt(s, c->owner[0] ? P_SET_PARTNER_CONFIG
                                  : P_UPD_PROFILE, err);
        if (st == NULL)
            return store_tx_fail(s);
        store_bind_text(st, 1, c->owner);
        store_bind_text(st, 2, partner_config);
        if (store_step_done(s, st, err, "update the partner") < 0)
            return store_tx_fail(s);
    }
    /* a running server reloads and uses the new certificate or key */
    if (p_simple(s, P_GEN_BUMP, "bump flow generation", err) < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

void store_cert_clear(struct store_cert *c)
{
    free(c->owner);
    free(c->subject);
    free(c->der);
    free(c->key);
    memset(c, 0, sizeof(*c));
}

void store_certs_free(struct store_cert *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++)
        store_cert_clear(&c[i]);
    free(c);
}

/* ---- receipts -------------------------------------------------------------- */

/* The receipt insert with r bound, or NULL with err. */
static sqlite3_stmt *receipt_insert(struct store *s,
                                    const struct store_receipt *r,
                                    struct error *err)
{
    sqlite3_stmt *st = p_stmt(s, P_RECEIPT_ADD, err);
    if (st == NULL)
        return NULL;
    store_bind_text(st, 1, r->message_id);
    store_bind_text(st, 2, r->direction);
    sqlite3_bind_int64(st, 3, r->at);
    store_bind_text(st, 4, r->as2_message_id);
    store_bind_text(st, 5, r->original_message_id);
    store_bind_text(st, 6, r->headers);
    sqlite3_bind_blob(st, 7, r->body ? (const void *)r->body : "",
                      (int)r->len, SQLITE_STATIC);
    return st;
}

int store_receipt_add(struct store *s, const struct store_receipt *r,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_receipt_add(store_pg(s), r, err);
    sqlite3_stmt *st = receipt_insert(s, r, err);
    return st ? store_step_tx(s, st, err, "store a receipt") : -1;
}

int store_receipt_add_tx(struct store *s, const struct store_receipt *r,
                         struct error *err)
{
    sqlite3_stmt *st = receipt_insert(s, r, err);
    return st ? store_step_done(s, st, err, "store a receipt") : -1;
}

static int receipt_row(sqlite3_stmt *st, int with_body,
                       struct store_receipt *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    r->message_id = store_col_dup(st, 1);
    r->direction = store_col_dup(st, 2);
    r->at = sqlite3_column_int64(st, 3);
    r->as2_message_id = store_col_dup(st, 4);
    r->original_message_id = store_col_dup(st, 5);
    if (with_body) {
        r->headers = store_col_dup(st, 6);
        r->body = blob_dup(st, 7, &r->len);
    }
    return r->message_id && r->direction ? 0 : -1;
}

int store_receipts_list(struct store *s, const char *message_id,
                        int with_body, struct store_receipt **out, size_t *n,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_receipts_list(store_pg(s), message_id, with_body, out,
                                 n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = p_stmt(s, P_RECEIPTS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, message_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_receipt *g = realloc(*out, (*n + 1) * sizeof(*g));
        if (g == NULL || receipt_row(st, with_body, &g[*n]) < 0) {
            if (g) {
                *out = g;
                (*n)++;
            }
            store_receipts_free(*out, *n);
            *out = NULL;
            *n = 0;
            sqlite3_reset(st);
            return error_set(err, "out of memory");
        }
        *out = g;
        (*n)++;
    }
    if (rc != SQLITE_DONE) {
        store_receipts_free(*out, *n);
        *out = NULL;
        *n = 0;
        sqlite3_reset(st);
        return store_db_error(s, err, "list receipts");
    }
    return 0;
}

void store_receipts_free(struct store_receipt *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].message_id);
        free(r[i].direction);
        free(r[i].as2_message_id);
        free(r[i].original_message_id);
        free(r[i].headers);
        free(r[i].body);
    }
    free(r);
}

/* ---- refused AS2 requests, folded into bursts ------------------------------- */

static int64_t event_insert(struct store *s, const char *msgid, int64_t at,
                            const char *level, const char *text,
                            struct error *err)
{
    sqlite3_stmt *st = p_stmt(s, P_EVT_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, msgid);
    sqlite3_bind_int64(st, 2, at);
    store_bind_text(st, 3, level);
    store_bind_text(st, 4, text);
    if (store_step_done(s, st, err, "insert event") < 0)
        return -1;
    return sqlite3_last_insert_rowid(store_db(s));
}

/* 1 and the burst (id, count, event) that r continues, 0 when none. */
static int burst_find(struct store *s, const struct store_refusal *r,
                      int64_t now, char id[ID_LEN + 1], int64_t *count,
                      int64_t *event_id, struct error *err)
{
    sqlite3_stmt *st = p_stmt(s, P_BURST, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, r->source);
    store_bind_text(st, 2, r->address);
    store_bind_text(st, 3, r->reason);
    sqlite3_bind_int64(st, 4, now - r->window_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(id, ID_LEN + 1, "%s", t ? (const char *)t : "");
        *count = sqlite3_column_int64(st, 1);
        *event_id = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "look up a burst of refusals");
    return rc == SQLITE_ROW;
}

/* A new burst: the refused message, its event, the refusals row. */
static int burst_new(struct store *s, const struct store_refusal *r,
                     int64_t now, char id[ID_LEN + 1], struct error *err)
{
    id_new(id);
    sqlite3_stmt *st = p_stmt(s, P_REFUSED_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    store_bind_text(st, 3, r->source);
    if (store_step_done(s, st, err, "insert a refused message") < 0 ||
        event_insert(s, id, now, "error", r->text, err) < 0 ||
        (st = p_stmt(s, P_BURST_INS, err)) == NULL)
        return -1;
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, r->source);
    store_bind_text(st, 3, r->address);
    store_bind_text(st, 4, r->reason);
    sqlite3_bind_int64(st, 5, now);
    return store_step_done(s, st, err, "insert a burst of refusals");
}

/* One more refusal of a burst: its count, and one "repeated" event
 * (added at the second refusal, rewritten at the later ones). */
static int burst_bump(struct store *s, const struct store_refusal *r,
                      int64_t now, const char *id, int64_t count,
                      int64_t event_id, struct error *err)
{
    char text[1200];
    snprintf(text, sizeof(text), "refused %lld times in all from %s (%s), "
             "the last one: %s", (long long)count, r->address, r->reason,
             r->text);
    sqlite3_stmt *st;
    if (event_id > 0) {
        if ((st = p_stmt(s, P_EVT_SET, err)) == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, event_id);
        sqlite3_bind_int64(st, 2, now);
        store_bind_text(st, 3, text);
        if (store_step_done(s, st, err, "update event") < 0)
            return -1;
    } else if ((event_id = event_insert(s, id, now, "error", text,
                                        err)) < 0) {
        return -1;
    }
    if ((st = p_stmt(s, P_BURST_BUMP, err)) == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, event_id);
    if (store_step_done(s, st, err, "count a refusal") < 0 ||
        (st = p_stmt(s, P_MSG_TOUCH, err)) == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    return store_step_done(s, st, err, "touch a refused message");
}

int store_refusal_record(struct store *s, const struct store_refusal *r,
                         char id[ID_LEN + 1], int64_t *count,
                         struct error *err)
{
    if (store_pg(s))
        return pgs_refusal_record(store_pg(s), r, id, count, err);
    int64_t now = time_now_ms(), n = 0, event_id = 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    int found = burst_find(s, r, now, id, &n, &event_id, err);
    if (found < 0 ||
        (found ? burst_bump(s, r, now, id, n + 1, event_id, err)
               : burst_new(s, r, now, id, err)) < 0 ||
        store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    *count = n + 1;
    return 0;
}
