/*
 * retention.h - how long messages are kept, and erasure (R9).
 *
 * Retention: a message is kept for the retention_days of the connector it
 * entered through (its source; a connector's config key, common to every
 * type), else wharf.conf's retention_days; 0 keeps it for ever. A purge
 * takes the expired messages that are finished (sent, failed, received,
 * refused, erased; nothing still queued, processing or retrying) and not
 * under a legal hold, and deletes them for good: in one transaction their
 * rows (events, receipts, hops, the message) go and their payload files
 * are listed as to be shredded; then each file's header (the data key
 * wrapped by the master key) is overwritten and synced (crypto-shredding:
 * no copy of the file can be decrypted any more) and the file removed. A
 * kill -9 in between leaves the files listed; the next purge finishes
 * them. The audit trail is never purged.
 *
 * Erasure (a person's request, GDPR): one message, or every message of a
 * partner (those that entered through, or went to, a connector whose
 * "partner" is that partner): the payload is crypto-shredded and removed,
 * the message stays as a record in state "erased". A held message is not
 * erased (the hold is lifted first, by an administrator).
 *
 * Callers (CLI, API, serve's purge job) write the audit entries with the
 * counts these functions return.
 */
#ifndef WHARF_SECURITY_RETENTION_H
#define WHARF_SECURITY_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct wharf;
struct store;

struct retention_plan {
    int64_t before;         /* > 0: everything created before (ms since the
                               epoch), whatever its connector says */
    int default_days;       /* else: wharf.conf's retention_days */
    bool dry_run;           /* count only, change nothing */
    int64_t now;            /* ms since the epoch */
};

struct retention_result {
    int64_t messages;       /* purged (or, dry run, that would be) */
    int64_t bytes;          /* their payload bytes */
    int64_t held;           /* expired but kept under a legal hold */
    int64_t shredded;       /* payload files shredded */
    int64_t failed;         /* payload files that could not be shredded
                               (still listed: the next purge tries again) */
    int64_t resumed;        /* files an interrupted purge had listed (its
                               rows were deleted; it may not have audited
                               them), shredded first by this one */
};

/* The audit detail of a purge: "purged=N bytes=B held_kept=H shredded=S
 * failed=F resumed=R before=WHEN" (WHEN: an ISO time, or retention_days
 * when p->before is 0), " (stopped by an error)" when !ok. */
void retention_detail(const struct retention_plan *p,
                      const struct retention_result *r, int ok, char *out,
                      size_t n);

/* Purge by the plan. 0 (r filled) or -1 with err (what was done before
 * the failure is in r). */
int retention_purge(struct wharf *w, struct store *st,
                    const struct retention_plan *p, struct retention_result *r,
                    struct error *err);

/* The retention of a connector config ("retention_days", else def). */
int retention_days_of(const char *config_json, int def);

/* Erase one message: 0 erased, 1 no such message, 2 held (err says so),
 * -1 with err. *bytes gets its payload size. */
int retention_erase(struct wharf *w, struct store *st, const char *id,
                    const char *actor, int64_t *bytes, struct error *err);

/* Erase every message of a partner: 0 (r: messages erased, bytes, held
 * kept), 1 no such partner, -1 with err. *conns (malloc'ed, caller frees)
 * names the connectors it looked at, comma-separated. */
int retention_erase_partner(struct wharf *w, struct store *st,
                            const char *partner, const char *actor,
                            struct retention_result *r, char **conns,
                            struct error *err);

/* Legal hold: 0 done, 1 no such message (hold) / not held (unhold), 2
 * already held, -1 with err. */
int retention_hold(struct store *st, const char *id, const char *actor,
                   const char *reason, struct error *err);
int retention_unhold(struct store *st, const char *id, struct error *err);

/* "DATE" as YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM:SSZ into ms
 * since the epoch. 0 or -1 with err. */
int retention_parse_date(const char *s, int64_t *out, struct error *err);

#endif
