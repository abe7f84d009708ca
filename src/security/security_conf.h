/*
 * security_conf.h - the wharf.conf keys of alerts and notifications (R19,
 * R7): the thresholds of the detectors and where notifications go. Part
 * of struct wharf_conf (core/wharf.h: `security`), parsed by
 * security_conf.c, applied live on SIGHUP (security_set_conf).
 *
 * Every detector is on by default with the threshold below; nothing is
 * sent anywhere by default (R1, R7): a channel works only once its
 * destination is configured.
 *
 *   alert_check_seconds = 60             how often the periodic detectors
 *                                        run (disk, certificates,
 *                                        connectors)
 *   alert_connector_failing_seconds = 300  a connector whose polls or
 *                                        deliveries all fail this long
 *   alert_disk_free_percent = 10         free space of the data dir below
 *                                        this (critical below half of it;
 *                                        0: off)
 *   alert_cert_days = 30,14,7,1          expiry steps of certificates
 *   alert_audit_verify_seconds = 3600    serve verifies the audit trail
 *                                        this often (0: off)
 *   notify_email_url =                   smtps://HOST:PORT, or smtp://
 *                                        with STARTTLS (TLS required)
 *   notify_email_from =, notify_email_to = (comma-separated)
 *   notify_email_level = warning         lowest level mailed
 *   notify_webhook_url =                 https://... (HMAC-SHA256 signed)
 *   notify_webhook_level = warning
 *   notify_syslog =                      unix:/dev/log, udp://HOST:PORT or
 *                                        tcp://HOST:PORT (RFC 5424)
 *   notify_syslog_level = info
 *   notify_ca_file =                     CA bundle (PEM) for the mail and
 *                                        webhook servers; empty: system
 */
#ifndef WHARF_SECURITY_CONF_H
#define WHARF_SECURITY_CONF_H

#include <stdint.h>

#include "util/error.h"

#define SECURITY_CERT_STEPS 8

struct security_conf {
    int64_t check_ms;
    int64_t connector_failing_ms;
    int disk_free_percent;
    int cert_days[SECURITY_CERT_STEPS];     /* descending, > 0 */
    int ncert_days;
    int64_t audit_verify_ms;
    char email_url[512];
    char email_from[256];
    char email_to[1024];
    int email_level;                /* enum alert_level */
    char webhook_url[1024];
    int webhook_level;
    char syslog[512];
    int syslog_level;
    char ca_file[1024];
};

void security_conf_defaults(struct security_conf *c);

/* One key = value of wharf.conf. 0, -1 with err for a bad value, 1 when
 * key is not one of these. */
int security_conf_set(struct security_conf *c, const char *key,
                      const char *v, struct error *err);

/* Settings that only make sense together (checked once every line is
 * read). 0 or -1 with err. */
int security_conf_final(const struct security_conf *c, struct error *err);

#endif
