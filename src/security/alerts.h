/*
 * alerts.h - raising and clearing alerts (R19): the small API the rest of
 * Wharf calls when it sees something an operator must know.
 *
 *   alert_raise("disk.low", "/var/lib/wharf", ALERT_WARNING,
 *               "data dir has 4% free", "4 GiB of 100 GiB free");
 *   alert_clear("disk.low", "/var/lib/wharf");
 *
 * An alert is named by its kind (a dotted rule name, see ALERT KINDS in
 * docs/operations.md) and a key (what it is about: a connector, an
 * address, a certificate id). Repeats fold into the one open alert of the
 * kind and key: its count and last-seen time go up, its level, summary and
 * details become the newest ones; the log gets a line only when its state
 * changes (opened, a new level, resolved), never per repeat. alert_clear
 * resolves it ("resolved" in its timeline). Each state change is also an
 * entry of the timeline that the notifier sends to the channels of
 * wharf.conf (notify.h). What repeats fold into depends on the kind: a
 * condition that clears (disk low, a failing connector) folds into its
 * alert until it clears, even once acknowledged; an event (a ban, a
 * configuration change) folds only while its alert is open, so a new one
 * after an acknowledgement is a new alert.
 *
 * Summaries and details are one line each, names and ids only: never a
 * secret, a payload byte or a credential.
 *
 * Both calls are safe from any thread and never fail their caller: an
 * alert that cannot be written is logged as an error instead. Without
 * alerts_attach (a process that has no data dir open) they only log.
 * They write through the calling thread's store connection
 * (wharf_store), so a caller must not hold a write transaction open on
 * another connection of the same database while it calls them.
 */
#ifndef WHARF_ALERTS_H
#define WHARF_ALERTS_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

struct wharf;
struct store;

enum alert_level { ALERT_INFO, ALERT_WARNING, ALERT_CRITICAL };

/* "info" | "warning" | "critical"; NULL out of range. */
const char *alert_level_name(enum alert_level l);
/* 0 and *out, or -1 for an unknown name. */
int alert_level_parse(const char *name, enum alert_level *out);

/* Raise (or fold into the open alert of) kind + key. */
void alert_raise(const char *kind, const char *key, enum alert_level level,
                 const char *summary, const char *details);

/* The condition kind + key has ended: resolve its live alert, if any. */
void alert_clear(const char *kind, const char *key);

/* The same through a given store connection (the caller's own, no
 * transaction open); for code that already holds one. */
void alert_raise_st(struct store *st, const char *kind, const char *key,
                    enum alert_level level, const char *summary,
                    const char *details);
void alert_clear_st(struct store *st, const char *kind, const char *key);

/* This process serves w from now on: alerts are written to its database
 * (through wharf_store), and the hooks of the audit trail and the vault
 * (bans, locked logins, configuration changes, integrity failures) raise
 * alerts. Call once, before threads start; w must outlive every later
 * call. NULL detaches. */
void alerts_attach(struct wharf *w);

/* Whether state changes get a log line: serve turns it on (its log is
 * wharf.log); a CLI command leaves it off (its stderr is the command's
 * own; the change is in the alert's timeline). Failures to record an
 * alert are always logged. */
void alerts_set_logging(bool on);
bool alerts_logging(void);

/* The wharf attached, or NULL (for the other files of src/security/). */
struct wharf *alerts_wharf(void);

/* A notifier may sleep until something happens: called after every
 * timeline entry this process writes (a raise that changed a state, a
 * clear, a transition). NULL: none. */
void alerts_set_wake(void (*fn)(void));
void alerts_wake(void);

#endif
