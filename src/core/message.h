/*
 * message.h - a message as connectors see it: immutable metadata plus a
 * payload that is read (decrypted, verified) as a stream.
 */
#ifndef WHARF_MESSAGE_H
#define WHARF_MESSAGE_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"
#include "util/id.h"

struct wharf;
struct store;
struct store_message;
struct payload_reader;

struct message {
    char id[ID_LEN + 1];
    const char *source;         /* connector that received it */
    const char *filename;       /* original name; may be NULL */
    int64_t size;               /* plaintext bytes */
    const char *sha256;         /* hex of the plaintext */
    const char *payload_path;   /* relative to the data dir */
    struct wharf *wharf;        /* not owned; core's (opaque to connectors:
                                   message_payload_open reads through it) */
};

/* Open the payload for reading (decrypted, each segment authenticated
 * before a byte of it is handed out). Caller owns; message_payload_close
 * when done. */
struct payload_reader *message_payload_open(const struct message *m,
                                            struct error *err);
/* Up to n plaintext bytes into buf: > 0, 0 at the verified end, -1 with
 * err (a truncated, altered or swapped payload). */
ssize_t message_payload_read(struct payload_reader *r, void *buf, size_t n,
                             struct error *err);
void message_payload_close(struct payload_reader *r);
/* The unit the payload is stored in (plaintext bytes per segment): reads
 * of this size cost one decryption each. */
#define MESSAGE_PAYLOAD_CHUNK (64 * 1024)

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

/* The durable jobs of message id (AS2 MDNs owed or waited for), as a JSON
 * array: id, kind, connector, hop, state, attempts, due_at, give_up_at,
 * created_at, last_error. */
json_t *message_jobs_json(struct store *st, const char *id,
                          struct error *err);

/* With hops, events, receipts, jobs and the legal hold ({at, actor,
 * reason} or null). */
json_t *message_detail_json(struct store *st, const struct store_message *m,
                            struct error *err);

/* Send message id again (who: the actor, for its history): its failed
 * hops, else its sent and failed ones, or, when it never left its source,
 * through the current links of that source; and its failed jobs
 * (store_message_resend). 0 with *requeued hops and *jobs (may be NULL),
 * 1 when there is no such message, 2 with err saying why there is nothing
 * to resend, -1 with err on failure. */
int message_resend(struct store *st, const char *id, const char *who,
                   int *requeued, int *jobs, struct error *err);

#endif
