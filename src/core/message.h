/*
 * message.h - a message as connectors see it: immutable metadata plus a
 * payload that is read (decrypted, verified) as a stream.
 */
#ifndef WHARF_MESSAGE_H
#define WHARF_MESSAGE_H

#include <jansson.h>
#include <stdint.h>

#include "util/error.h"
#include "util/id.h"
#include "vault/vault.h"

struct wharf;
struct store;
struct store_message;

struct message {
    char id[ID_LEN + 1];
    const char *source;         /* connector that received it */
    const char *filename;       /* original name; may be NULL */
    int64_t size;               /* plaintext bytes */
    const char *sha256;         /* hex of the plaintext */
    const char *payload_path;   /* relative to the data dir */
    struct wharf *wharf;        /* not owned */
};

/* Open the payload for reading. Caller owns; payload_close when done. */
struct payload_reader *message_payload_open(const struct message *m,
                                            struct error *err);

/* A stored message as JSON (id, created_at, updated_at, source, filename,
 * size, sha256, state): what `wharf message list --json` and the API show.
 * Caller owns the result. */
json_t *message_json(const struct store_message *m);

/* message_json plus its "hops" and "events". NULL with err set on a store
 * failure. Caller owns the result. */
/* The AS2 receipts (MDNs) kept with message id, as a JSON array: n (1..),
 * direction, at, mdn_message_id, original_message_id, bytes. */
json_t *message_receipts_json(struct store *st, const char *id,
                              struct error *err);

/* With hops, events, receipts and the legal hold ({at, actor, reason} or
 * null). */
json_t *message_detail_json(struct store *st, const struct store_message *m,
                            struct error *err);

/* Send message id again (who: the actor, for its history): its failed
 * hops, else its sent and failed ones, or, when it never left its source,
 * through the current links of that source (store_message_resend). 0 with
 * *requeued, 1 when there is no such message, 2 with err saying why there
 * is nothing to resend, -1 with err on failure. */
int message_resend(struct store *st, const char *id, const char *who,
                   int *requeued, struct error *err);

#endif
