/*
 * pg_jobs.h - the PostgreSQL statements of job_store.h (pg_jobs.c).
 * Included only by sqlite_jobs.c (which hands each call over when the
 * store is a PostgreSQL one) and pg_jobs.c. Behaviour, return codes and
 * ownership: as job_store.h says for the store_ function of the same name.
 */
#ifndef WHARF_PG_JOBS_H
#define WHARF_PG_JOBS_H

#include "store/job_store.h"
#include "store/pg_store.h"

int pgs_job_add(struct pg_store *p, const struct store_job_new *j,
                struct error *err);
int pgs_job_active(struct pg_store *p, const char *msgid,
                   const char *connector, const char *kind,
                   char id[ID_LEN + 1], struct error *err);
int pgs_job_cancel(struct pg_store *p, const char *msgid,
                   const char *connector, const char *kind,
                   struct error *err);
int pgs_job_input(struct pg_store *p, const char *id,
                  const unsigned char *input, size_t len, struct error *err);
int pgs_job_lease(struct pg_store *p, const char *owner, int64_t now,
                  int64_t lease_ms, size_t max, struct store_job **out,
                  size_t *n, struct error *err);
int pgs_job_finish_all(struct pg_store *p, const struct store_job_outcome *o,
                       size_t n, int *skipped, int *hop_settled,
                       struct error *err);
int pgs_message_jobs(struct pg_store *p, const char *msgid,
                     struct store_job **out, size_t *n, struct error *err);
int pgs_job_counts(struct pg_store *p, int64_t *pending, int64_t *processing,
                   int64_t *failed, struct error *err);

#endif
