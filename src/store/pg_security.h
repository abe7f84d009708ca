/*
 * pg_security.h - the PostgreSQL statements of security_store.h (alerts,
 * incidents, the security timeline), in pg_security.c. Included only by
 * sqlite_security.c (which hands each entry point over on a PostgreSQL
 * store) and pg_security.c. Behaviour, return codes and ownership: as
 * security_store.h says for the store_ function of the same name.
 */
#ifndef WHARF_PG_SECURITY_H
#define WHARF_PG_SECURITY_H

#include "store/security_store.h"

struct pg_store;

int pgs_alert_raise(struct pg_store *p, const struct store_alert_raise *r,
                    struct store_alert *out, struct error *err);
int pgs_alert_resolve(struct pg_store *p, const char *kind, const char *key,
                      const char *text, int64_t at, struct store_alert *out,
                      struct error *err);
int pgs_alert_get(struct pg_store *p, int64_t id, struct store_alert *out,
                  struct error *err);
int pgs_alert_list(struct pg_store *p, const char *state, int64_t before,
                   size_t limit, struct store_alert **out, size_t *n,
                   struct error *err);
int pgs_alerts_of_incident(struct pg_store *p, int64_t incident,
                           struct store_alert **out, size_t *n,
                           struct error *err);
int pgs_alert_counts(struct pg_store *p, int64_t counts[3],
                     struct error *err);
int pgs_alert_transition(struct pg_store *p, int64_t id, const char *from,
                         const char *to, int64_t at,
                         const struct store_sec_event_new *ev,
                         struct error *err);
int pgs_alert_escalate(struct pg_store *p, int64_t alert_id, int64_t into,
                       const char *title, const char *owner, int64_t at,
                       const struct store_sec_event_new *ev, size_t nev,
                       int64_t *incident, struct error *err);
int pgs_incident_get(struct pg_store *p, int64_t id,
                     struct store_incident *out, struct error *err);
int pgs_incident_list(struct pg_store *p, const char *state, int64_t before,
                      size_t limit, struct store_incident **out, size_t *n,
                      struct error *err);
int pgs_incident_put(struct pg_store *p, const struct store_incident *inc,
                     int64_t expect_updated,
                     const struct store_sec_event_new *ev, size_t nev,
                     struct error *err);
int pgs_sec_events_of(struct pg_store *p, int64_t alert_id,
                      int64_t incident_id, struct store_sec_event **out,
                      size_t *n, struct error *err);
int pgs_sec_events_after(struct pg_store *p, int64_t after, size_t limit,
                         struct store_sec_event **out, size_t *n,
                         struct error *err);
int pgs_sec_event_last(struct pg_store *p, int64_t *id, struct error *err);

#endif
