/*
 * posture_store.h - what `wharf doctor`, `wharf inventory` and /metrics
 * read from the database beyond the other store headers: the newest audit
 * entry of some actions (the master key's last rotation), the newest
 * backup, and counts for the metrics.
 * Implemented in sqlite_posture.c. Read-only.
 *
 * The backups record is the table of migration 9 (store/backup_store.h,
 * written by `wharf backup`, R20): one row per run, times in ms since the
 * epoch, ok 1 when the backup completed. The doctor reads the newest ok
 * row's finished_at and location.
 */
#ifndef WHARF_POSTURE_STORE_H
#define WHARF_POSTURE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;

/* The newest audit entry whose action is one of actions_json (a JSON
 * array of names): 0 with *at (ms) and *action (malloc'ed, caller frees),
 * 1 when there is none, -1 with err. */
int store_audit_newest(struct store *s, const char *actions_json,
                       int64_t *at, char **action, struct error *err);

/* The newest successful backup: 0 with *finished_at and *location
 * (malloc'ed or NULL; caller frees), 1 when none is recorded (or the table
 * does not exist yet), -1 with err (also when the table has another
 * shape than the one above). */
int store_backup_newest(struct store *s, int64_t *finished_at,
                        char **location, struct error *err);

/* Counts by (name, state): hops by connector and state, or messages by
 * state (name NULL). *out malloc'ed; free with store_counts_free. */
struct store_count { char *name; char *state; int64_t n; };
int store_hop_counts_by_connector(struct store *s, struct store_count **out,
                                  size_t *n, struct error *err);
int store_message_counts(struct store *s, struct store_count **out,
                         size_t *n, struct error *err);
void store_counts_free(struct store_count *c, size_t n);

/* Whether a table of that name exists (for tables of other tasks, e.g.
 * "backups"): 1 yes, 0 no, -1 with err. (Alerts by level:
 * store_alert_counts of security_store.h.) */
int store_table_exists(struct store *s, const char *name, struct error *err);

#endif
