/*
 * partner_store.h - the AS2 profile, partners and certificates (tables of
 * schema migration 4 and the setting "profile", see sqlite.c). Implemented
 * in sqlite_partners.c.
 *
 * Written as part of the flow (store_flow_put replaces all of them in its
 * transaction) and read back with it (store_flow_get); certificates are
 * also listed on their own for `wharf cert` and the API. Private keys are
 * stored as the vault sealed them; this layer never sees plaintext.
 */
#ifndef WHARF_PARTNER_STORE_H
#define WHARF_PARTNER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/id.h"

struct store;
struct store_flow;
struct store_cert;

/* Inside store_flow_put's transaction: replace profile, partners, certs. */
int store_partners_write(struct store *s, const struct store_flow *f,
                         struct error *err);

/* Inside store_flow_get's read transaction: fill f->profile, f->partners. */
int store_partners_read(struct store *s, struct store_flow *f,
                        struct error *err);

/* Certificates of owner ("" = the local profile), or of everyone when
 * owner is NULL, ordered by owner then not_after. with_keys: also the
 * sealed private keys. *out is malloc'ed: free with store_certs_free. */
int store_certs_list(struct store *s, const char *owner, int with_keys,
                     struct store_cert **out, size_t *n, struct error *err);

/* Add one certificate (a partner's, or the profile's with its sealed key)
 * and, when config is not NULL, set that partner's config JSON (or the
 * profile JSON, for owner "") in the same transaction (so an export names
 * the new file). */
int store_cert_add(struct store *s, const struct store_cert *c,
                   const char *partner_config, struct error *err);

/* ---- receipts: the raw MDNs sent and received (non-repudiation) ---- */

struct store_receipt {
    int64_t id, at;             /* at: ms since the epoch */
    char *message_id;           /* Wharf's message */
    char *direction;            /* "sent" (we answered) | "received" */
    char *as2_message_id;       /* the MDN's own Message-ID, may be NULL */
    char *original_message_id;  /* the AS2 message it answers, may be NULL */
    char *headers;              /* "Name: value\r\n" lines */
    unsigned char *body; size_t len;
};

int store_receipt_add(struct store *s, const struct store_receipt *r,
                      struct error *err);
/* Receipts of a message, oldest first; with_body: also headers and body.
 * Free with store_receipts_free. */
int store_receipts_list(struct store *s, const char *message_id,
                        int with_body, struct store_receipt **out, size_t *n,
                        struct error *err);
void store_receipts_free(struct store_receipt *r, size_t n);

/* ---- refused AS2 requests, folded into bursts (migration 6) ---- */

struct store_refusal {
    const char *source;         /* the connector that refused it */
    const char *address;        /* the client's address */
    const char *reason;         /* short class: "decryption-failed", ... */
    const char *text;           /* the event text of this refusal */
    int64_t window_ms;          /* a burst goes on while the refusals of
                                 * one source, address and reason come
                                 * within this long of each other */
};

/* Record one refused request in one transaction, folded into its burst:
 * the first is a message in state "refused" with text as its error event;
 * each later one counts, moves the burst's last-seen time and rewrites
 * one "refused N times in all ..." event (a burst keeps 2 events,
 * whatever its length). id gets the burst's message id, *count its
 * refusals so far (1: a new record). 0 or -1 with err. */
int store_refusal_record(struct store *s, const struct store_refusal *r,
                         char id[ID_LEN + 1], int64_t *count,
                         struct error *err);

void store_cert_clear(struct store_cert *c);
void store_certs_free(struct store_cert *c, size_t n);

#endif
