/*
 * security.h - the security operations of a running `wharf serve` (R19):
 * a detector thread (every second it writes the integrity failures the
 * vault reported; every alert_check_seconds it runs the periodic rules of
 * detectors.h; every alert_audit_verify_seconds it verifies the audit
 * trail) and a notifier thread (sends the security timeline to the
 * channels of wharf.conf, woken by every new entry, see notify.h).
 *
 * The CLI raises alerts too (alerts_attach in cli_open) but runs neither
 * thread: what it raises is sent by the next serve that runs.
 */
#ifndef WHARF_SECURITY_H
#define WHARF_SECURITY_H

#include "util/error.h"

struct wharf;
struct security_conf;

/* Start both threads for w (alerts_attach(w) must have been called).
 * 0, or -1 with err. Stop with security_stop. */
int security_start(struct wharf *w, struct error *err);
void security_stop(void);

/* The settings the threads use from now on (a copy; serve calls it at
 * start and after every SIGHUP reload, from its main thread). A
 * notification channel configured for the first time starts with what
 * happens from this call on. */
void security_set_conf(const struct security_conf *c);

#endif
