/*
 * retention_store.h - the rows of retention and erasure (R9): which
 * messages a purge may delete, the purge itself (rows first, then the
 * payload files it listed), legal holds, and the messages of a set of
 * connectors (a partner's, for an erasure). Tables of schema migration 11
 * (legal_holds, purge_pending; see sqlite.c). Implemented in
 * sqlite_retention.c.
 *
 * No policy here: security/retention.c decides what is expired (per
 * connector retention_days, wharf.conf's default) and shreds the files.
 * Ownership: every struct filled here owns its strings; free them with the
 * matching *_free function. Times are ms since the epoch.
 */
#ifndef WHARF_RETENTION_STORE_H
#define WHARF_RETENTION_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/id.h"

struct store;

/* A message a purge would delete, or one of an erasure. */
struct store_expired {
    char id[ID_LEN + 1];
    char *source;
    char *state;
    char *payload_path;         /* relative to the data dir; NULL: none */
    int64_t created_at, size;
};
void store_expired_free(struct store_expired *e, size_t n);

/* What a purge may take: messages created before `before` whose source is
 * `source` (NULL: any source), in a final state (sent, failed, received,
 * refused, erased) with no hop still queued, processing or retrying, and
 * not under a legal hold; oldest first, at most max. *out malloc'ed. */
int store_purge_candidates(struct store *s, const char *source,
                           int64_t before, size_t max,
                           struct store_expired **out, size_t *n,
                           struct error *err);

/* How many messages store_purge_candidates would give without a limit,
 * and their payload bytes (a dry run). */
int store_purge_count(struct store *s, const char *source, int64_t before,
                      int64_t *count, int64_t *bytes, struct error *err);

/* How many messages created before `before` (of source, NULL: any) are
 * under a legal hold: what a purge keeps. */
int store_purge_held(struct store *s, const char *source, int64_t before,
                     int64_t *count, struct error *err);

/* The distinct sources of stored messages. *out: malloc'ed array of
 * malloc'ed names; free with store_names_free. */
int store_message_sources(struct store *s, char ***out, size_t *n,
                          struct error *err);
void store_names_free(char **names, size_t n);

/* In one transaction, for each message of ids that is still a candidate
 * (final state, nothing in flight, not held; checked again here, so a hold
 * placed meanwhile wins): list its payload file in purge_pending, then
 * delete its events, receipts, refusal record, hops and row. gone[i] is
 * set to 1 for each that went (0 otherwise). The caller then shreds the
 * files store_purge_pending lists and drops each with store_purge_done. */
int store_purge_delete(struct store *s, const char *const *ids, size_t n,
                       int64_t now, int *gone, struct error *err);

/* Payload files of purged messages not shredded yet (a kill -9 may leave
 * some), at most max. */
struct store_pending { char id[ID_LEN + 1]; char *payload_path; };
int store_purge_pending(struct store *s, size_t max,
                        struct store_pending **out, size_t *n,
                        struct error *err);
void store_pending_free(struct store_pending *p, size_t n);
int store_purge_done(struct store *s, const char *id, struct error *err);

/* ---- legal holds ------------------------------------------------------------- */

struct store_hold {
    int64_t at;
    char *actor;
    char *reason;               /* NULL: none given */
};
void store_hold_clear(struct store_hold *h);

/* Put message id under a legal hold: 0 done, 1 no such message, 2 already
 * held (nothing changed), -1 with err. */
int store_hold_set(struct store *s, const char *id, const char *actor,
                   const char *reason, int64_t now, struct error *err);
/* Lift it: 0 done, 1 it was not held, -1 with err. */
int store_hold_lift(struct store *s, const char *id, struct error *err);
/* 0 held (*out filled), 1 not held, -1 with err. */
int store_hold_get(struct store *s, const char *id, struct store_hold *out,
                   struct error *err);
/* How many messages are held now. */
int store_hold_count(struct store *s, int64_t *count, struct error *err);

/* ---- a partner's messages ------------------------------------------------------ */

/* Messages that entered through one of the connectors named in conns_json
 * (a JSON array of names) or have a hop at one of them, with their hold
 * state (*held[i] 1 when held). Oldest first. *out, *held malloc'ed. */
int store_messages_of(struct store *s, const char *conns_json,
                      struct store_expired **out, int **held, size_t *n,
                      struct error *err);

#endif
