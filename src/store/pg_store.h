/*
 * pg_store.h - the PostgreSQL backend of store.h (libpq): settings, the
 * flow (connectors, links, sealed connector secrets, the AS2 profile,
 * partners, certificates), messages, hops with their leases (FOR UPDATE
 * SKIP LOCKED), events, and the job leases that store_leases_renew /
 * _release and store_message_resend touch. The per-subsystem store headers
 * have their own pg_<area>.c twins (pg_internal.h lists them).
 *
 * Only src/store/sqlite.c includes this header: it owns struct store and
 * hands each entry point of store.h to these functions when the store was
 * opened with a postgresql:// URL.
 *
 * One struct pg_store is one connection, not thread-safe (as SQLite's).
 * Ownership: as store.h says for each function.
 */
#ifndef WHARF_PG_STORE_H
#define WHARF_PG_STORE_H

#include "store/store.h"

struct pg_store;

/* True when path names a PostgreSQL database (postgresql:// or
 * postgres://). */
bool pgs_is_url(const char *path);

/* Connect to url, create or upgrade the schema (one node at a time: an
 * advisory lock). Caller owns; NULL with err. */
struct pg_store *pgs_open(const char *url, struct error *err);
/* Let go of the session's advisory locks, then disconnect. NULL is a
 * no-op. */
void pgs_close(struct pg_store *p);
/* The URL without its password (for messages). Borrowed. */
const char *pgs_name(const struct pg_store *p);
int pgs_schema_version(struct pg_store *p);

int pgs_setting_get(struct pg_store *p, const char *key, char **value,
                    struct error *err);
int pgs_setting_set(struct pg_store *p, const char *key, const char *value,
                    struct error *err);
int pgs_settings_list(struct pg_store *p, char ***keys, char ***values,
                      size_t *n, struct error *err);

int pgs_flow_get(struct pg_store *p, struct store_flow *out,
                 struct error *err);
int pgs_flow_put(struct pg_store *p, const struct store_flow *f,
                 struct error *err);
int pgs_connector_config_set(struct pg_store *p, const char *name,
                             const char *old_config, const char *config,
                             struct error *err);

int pgs_intake(struct pg_store *p, struct store_new *items, size_t n,
               struct error *err);
struct store_job_new;
int pgs_message_release(struct pg_store *p, const char *msgid,
                        const char *why, const struct store_receipt *kept,
                        const struct store_job_new *job, struct error *err);
int pgs_release_held(struct pg_store *p, struct error *err);
int pgs_release_stale_holds(struct pg_store *p, int64_t before,
                            int64_t *released, struct error *err);
int pgs_message_refused(struct pg_store *p, const char *source,
                        const char *text, char id[ID_LEN + 1],
                        struct error *err);
int pgs_message_get(struct pg_store *p, const char *id,
                    struct store_message *out, struct error *err);
int pgs_message_prefix(struct pg_store *p, const char *prefix,
                       char id[ID_LEN + 1], int64_t *count,
                       struct error *err);
int pgs_message_list(struct pg_store *p, const char *state, int64_t limit,
                     int64_t offset, struct store_message **out, size_t *n,
                     struct error *err);
int pgs_message_each(struct pg_store *p,
                     int (*cb)(const struct store_message *m, void *arg),
                     void *arg, struct error *err);
int pgs_message_resend(struct pg_store *p, const char *id, const char *who,
                       const char *const *next, size_t nnext, int *requeued,
                       int *jobs, struct error *err);
int pgs_message_erase(struct pg_store *p, const char *id, const char *who,
                      struct error *err);

int pgs_hop_lease(struct pg_store *p, const char *owner, int64_t now,
                  int64_t lease_ms, size_t max, const struct store_lane *lane,
                  struct store_hop **out, size_t *n, struct error *err);
int pgs_leases_renew(struct pg_store *p, const char *owner, int64_t until,
                     struct error *err);
int pgs_leases_release(struct pg_store *p, struct error *err);
int pgs_hop_finish(struct pg_store *p, const struct store_outcome *o,
                   size_t n, size_t *skipped, struct error *err);
int pgs_message_hops(struct pg_store *p, const char *id,
                     struct store_hop **out, size_t *n, struct error *err);
int pgs_hop_counts(struct pg_store *p, int64_t *queued, int64_t *processing,
                   int64_t *retrying, int64_t *sent, int64_t *failed,
                   struct error *err);

int pgs_event_add(struct pg_store *p, const char *msgid, int64_t hop_id,
                  const char *level, const char *text, struct error *err);
int pgs_message_events(struct pg_store *p, const char *id,
                       struct store_event **out, size_t *n,
                       struct error *err);

#endif
