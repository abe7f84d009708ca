/*
 * job_store.h - durable jobs (table `jobs` of schema migration 10, see
 * sqlite.c): follow-up work of a message that the engine runs and retries
 * through a connector (an AS2 MDN owed to a partner, an MDN waited for).
 * Implemented in sqlite_jobs.c.
 *
 * A job belongs to a message and (hop_id > 0) one of its hops, at one
 * connector, and has a kind (the connector type's job table names it).
 * States: queued (runs at due_at), waiting (runs at due_at or as soon as
 * something arrives for it: store_job_input), processing (leased), done,
 * failed (given up: a resend of the message queues it again), expired
 * (given up, its outcome handed to its hop). At most one job per message,
 * connector and kind is queued, waiting or processing: adding one replaces
 * the other.
 *
 * data and input are sealed blobs (the vault's, core/jobs.c: contexts
 * "job:ID:data" and "job:ID:input"), or, for a kind whose type keeps them
 * in the clear (AS2's MDN jobs: nothing a receipt does not hold too),
 * tagged values (core/jobs.h); this layer stores either as given and
 * never tells them apart.
 * Ownership: rows filled here own their strings and blobs (store_jobs_free).
 */
#ifndef WHARF_JOB_STORE_H
#define WHARF_JOB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/error.h"
#include "util/id.h"

struct store_job {
    char id[ID_LEN + 1];
    char message_id[ID_LEN + 1];
    int64_t hop_id;             /* 0: the message, not one hop */
    char *connector, *kind, *state;
    int attempts;               /* failed runs */
    int waits;                  /* runs that said "not yet" */
    int64_t due_at, give_up_at; /* ms since the epoch; give_up_at 0: never */
    int64_t created_at, updated_at;
    char *last_error;
    unsigned char *data; size_t data_len;       /* sealed; lease only */
    unsigned char *input; size_t input_len;     /* sealed or NULL; lease only */
    int hop_attempts;           /* lease only: its hop's attempts */
};
void store_jobs_free(struct store_job *j, size_t n);

struct store_job_new {
    const char *id;             /* id_new() */
    const char *message_id;
    int64_t hop_id;
    const char *connector, *kind;
    int waiting;                /* 1: waits (for input, or until give_up);
                                   0: queued, due now */
    int64_t window_ms;          /* give up this long after it is queued
                                   (also after a resend); 0: never */
    const unsigned char *data; size_t data_len;     /* sealed */
    const char *level, *text;   /* an event of the message, or text NULL */
};

/* Add j, replacing an active job of the same message, connector and kind,
 * in one transaction. 0 or -1 with err. */
int store_job_add(struct store *s, const struct store_job_new *j,
                  struct error *err);

/* The active (queued, waiting or processing) job of msgid, connector and
 * kind: 1 when there is one (and *id when id is not NULL), 0, -1 err. */
int store_job_active(struct store *s, const char *msgid, const char *connector,
                     const char *kind, char id[ID_LEN + 1], struct error *err);

/* Drop the queued or waiting job of msgid, connector and kind (nothing
 * happened yet that it stands for). 1 dropped, 0 none, -1 err. */
int store_job_cancel(struct store *s, const char *msgid, const char *connector,
                     const char *kind, struct error *err);

/* Something arrived for the queued or waiting job of msgid, connector and
 * kind: input (sealed for that job's id, which *id gets first: see
 * store_job_active) is set and the job is due now. 1 set, 0 no such job
 * (or it changed meanwhile), -1 err. */
int store_job_input(struct store *s, const char *id, const unsigned char *input,
                    size_t len, struct error *err);

/* Lease up to max due jobs for owner until now + lease_ms: queued or
 * waiting ones whose due_at has come, and processing ones whose lease
 * expired; never one whose hop is being delivered (processing) right now.
 * They become `processing`. *out: free with store_jobs_free. */
int store_job_lease(struct store *s, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max, struct store_job **out,
                    size_t *n, struct error *err);

/* What became of one leased job: its new state and counters, an event,
 * and optionally the outcome of its hop (applied only while that hop waits:
 * state retrying). */
struct store_job_outcome {
    const char *id;
    const char *message_id;
    int64_t hop_id;
    const char *owner;          /* the lease holder: a lost lease is skipped */
    const char *state;          /* queued waiting done failed expired */
    int attempts, waits;
    int64_t due_at;
    const char *error;          /* last_error (NULL: keep none) */
    const char *level, *text;   /* its event, or text NULL */
    const struct store_outcome *hop;    /* or NULL */
    /* a receipt recorded with the job's new state, only when that is
     * (AS2: the asynchronous MDN the job checked), or NULL */
    const struct store_receipt *kept;
};

/* Commit o in one transaction. 0 (*skipped = 1 when the job was not
 * ours any more; *hop_settled = 1 when its hop took the outcome), -1. */
int store_job_finish(struct store *s, const struct store_job_outcome *o,
                     int *skipped, int *hop_settled, struct error *err);

/* The outcomes o[0..n) of a batch in one transaction (one sync for all):
 * skipped[i] and hop_settled[i] as above. All or none: on -1 nothing was
 * recorded (every flag 0). On PostgreSQL each job's message row is locked
 * in the order given: callers order o by message id. */
int store_job_finish_all(struct store *s, const struct store_job_outcome *o,
                         size_t n, int *skipped, int *hop_settled,
                         struct error *err);

/* Jobs of message msgid, oldest first, without blobs. */
int store_message_jobs(struct store *s, const char *msgid,
                       struct store_job **out, size_t *n, struct error *err);

/* Counts per state (status, tests): queued+waiting, processing, failed. */
int store_job_counts(struct store *s, int64_t *pending, int64_t *processing,
                     int64_t *failed, struct error *err);

#endif
