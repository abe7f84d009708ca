/*
 * doctor_internal.h - what the files of the posture report share
 * (doctor.c: the report, the file checks and the output formats;
 * doctor_checks.c: the checks of the configuration, people and keys;
 * doctor_net.c: listeners, connectors, partners and certificates).
 * Nothing outside src/security/doctor*.c includes it.
 */
#ifndef WHARF_DOCTOR_INTERNAL_H
#define WHARF_DOCTOR_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "security/doctor.h"

enum doctor_status { DOCTOR_PASS, DOCTOR_WARN, DOCTOR_FAIL };

/* One check's run: the report it goes into and the data dir. */
struct doctor {
    json_t *report;                 /* {"checks": [...]} */
    struct wharf *w;                /* NULL for the file checks */
    const struct wharf_conf *conf;  /* in effect (doctor_env.conf) */
    struct store *st;
    const struct doctor_env *env;
    int64_t now;                    /* ms since the epoch */
};

/* Append a check: controls is a space-separated list ("A.8.24 A.8.3");
 * action "" when there is nothing to do; found is printf-style. */
void doctor_add(json_t *report, const char *id, enum doctor_status s,
                const char *controls, const char *action,
                const char *found_fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* A growing list of names for a check's "found": "a, b, c" (at most a few
 * hundred bytes, then "..."). */
struct doctor_list {
    char text[768];
    int n;
};
void doctor_list_add(struct doctor_list *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* doctor_checks.c */
void doctor_check_user(struct doctor *d);
void doctor_check_sandbox(struct doctor *d);
void doctor_check_keys(struct doctor *d);
void doctor_check_keystore(struct doctor *d);
void doctor_check_mfa(struct doctor *d);
void doctor_check_tokens(struct doctor *d);
void doctor_check_master_key(struct doctor *d);
void doctor_check_logging(struct doctor *d);
void doctor_check_audit(struct doctor *d);
void doctor_check_backup(struct doctor *d);
void doctor_check_retention(struct doctor *d);
void doctor_check_security_md(struct doctor *d);
void doctor_check_paths(struct doctor *d);
void doctor_check_disk(struct doctor *d);
void doctor_check_metrics(struct doctor *d);

/* doctor_net.c */
void doctor_check_listeners(struct doctor *d);
void doctor_check_connectors(struct doctor *d);
void doctor_check_host_keys(struct doctor *d);
void doctor_check_partners(struct doctor *d);
void doctor_check_certificates(struct doctor *d);

#endif
