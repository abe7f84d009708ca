/*
 * intake.h - how a source hands new messages to Wharf (M2).
 *
 * A source adds messages to an intake (each payload is encrypted to its
 * own file as it streams in), then calls intake_commit(): the payload files
 * of the whole batch are made durable together (one batched sync), then the
 * messages, their first hops and events are committed in one transaction.
 * Only after intake_commit() returned 0 may the source acknowledge (delete
 * the file, answer 2xx / MDN). If it fails, nothing of the batch is stored
 * and its payload files are removed: the source keeps its originals.
 *
 * Duplicates: a source may give a `source_key` (e.g. name, size, mtime);
 * with the content's SHA-256 it forms the dedup key. A second message with
 * the same key from the same source is not stored again; intake_duplicate()
 * says so and names the stored one, and the source acknowledges it as done.
 */
#ifndef WHARF_INTAKE_H
#define WHARF_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/id.h"

struct wharf;
struct store;
struct intake;

/* An intake for messages arriving at connector `source` that go on to the
 * `nnext` connectors in `next` (borrowed: must outlive the intake). Caller
 * owns; intake_free. */
struct intake *intake_new(struct wharf *w, struct store *st, const char *source,
                          const char *const *next, size_t nnext);

/* Stream one message in: begin, write any number of times, end. */
int intake_begin(struct intake *in, const char *filename,
                 const char *source_key, struct error *err);
int intake_write(struct intake *in, const void *buf, size_t n,
                 struct error *err);
int intake_end(struct intake *in, struct error *err);
/* For an intake of one message: its commit also
 * keeps kept (a receipt of it: AS2's MDN, built before the commit and
 * sent only after it) and adds job (an asynchronous MDN owed; its
 * workers are woken once it committed), each may be NULL, and says why
 * as an event; its next hops go on at once. Nothing of them is kept for
 * a duplicate (intake_duplicate). The pointers must stay valid until
 * intake_commit returned; they are not used after it. */
struct conn_receipt;
struct conn_job_ready;
void intake_keep(struct intake *in, const struct conn_receipt *kept,
                 const struct conn_job_ready *job, const char *why);
/* Name (or rename) the message being streamed, before intake_end: for
 * sources that learn the name from the content (AS2). */
int intake_set_filename(struct intake *in, const char *filename,
                        struct error *err);
/* Drop the message being streamed (its partial payload file is removed). */
void intake_cancel(struct intake *in);

/* Read fd to its end as one message (begin + write + end). */
int intake_add_fd(struct intake *in, int fd, const char *filename,
                  const char *source_key, struct error *err);

/* Make the batch durable and commit it; see the top of this file. After
 * it, the results stay readable until intake_reset(). */
int intake_commit(struct intake *in, struct error *err);

size_t intake_count(const struct intake *in);
const char *intake_id(const struct intake *in, size_t i);
/* The file name given to intake_begin for item i (may be NULL). */
const char *intake_filename(const struct intake *in, size_t i);
/* NULL when item i was new; else the id of the stored duplicate. */
const char *intake_duplicate(const struct intake *in, size_t i);

/* Release the held next hops of stored message id, if any are held (a
 * hold left by an earlier version, which held them until its MDN went
 * out): they go on now; why is the event said then. kept, when not NULL,
 * is a receipt of the message (AS2: the MDN answering a replay) kept in
 * the same transaction,
 * and job, when not NULL, a job added in it (an asynchronous MDN owed;
 * its workers are woken once it committed). 0 or -1 with err (nothing
 * done). */
int intake_release(struct intake *in, const char *id, const char *why,
                   const struct conn_receipt *kept,
                   const struct conn_job_ready *job, struct error *err);

/* A request the source refused (nothing of it stored), recorded against
 * the source and folded into its burst: one "refused" message per source,
 * address and reason while they keep coming within window_ms of each
 * other. id gets the burst's message id, *count its refusals so far (1:
 * a new record). 0 or -1 with err. */
struct intake_refusal {
    const char *address;        /* the client's */
    const char *reason;         /* short class: "decryption-failed", ... */
    const char *text;           /* the event text of this refusal */
    int64_t window_ms;
};
int intake_refused(struct intake *in, const struct intake_refusal *r,
                   char id[ID_LEN + 1], int64_t *count, struct error *err);

/* Forget the committed batch so the intake can take the next one. */
void intake_reset(struct intake *in);

/* Uncommitted payload files are removed. NULL is fine. */
void intake_free(struct intake *in);

#endif
