/*
 * security_conf.c - parses the alert_* and notify_* keys of wharf.conf
 * (security_conf.h lists them with their defaults).
 *
 * Owns the defaults and the checks of those keys: whole numbers in range,
 * levels by name, URLs whose scheme keeps TLS on (smtps://, smtp:// with
 * STARTTLS required at send time, https:// only for the webhook), syslog
 * targets of a known form. Must never open, resolve or contact anything
 * (parsing runs at start, on SIGHUP and in the fuzzer).
 */
#include "security/security_conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/syslog.h"
#include "security/alerts.h"

void security_conf_defaults(struct security_conf *c)
{
    memset(c, 0, sizeof(*c));
    c->check_ms = 60000;
    c->connector_failing_ms = 300000;
    c->disk_free_percent = 10;
    c->cert_days[0] = 30;
    c->cert_days[1] = 14;
    c->cert_days[2] = 7;
    c->cert_days[3] = 1;
    c->ncert_days = 4;
    c->audit_verify_ms = 3600000;
    c->email_level = ALERT_WARNING;
    c->webhook_level = ALERT_WARNING;
    c->syslog_level = ALERT_INFO;
}

static int sec_int(const char *key, const char *v, long long min,
                   long long max, long long *out, struct error *err)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0' || x < min || x > max)
        return error_set(err, "%s must be a whole number from %lld to %lld, "
                         "not '%s'", key, min, max, v);
    *out = x;
    return 0;
}

static int sec_str(const char *key, const char *v, char *out, size_t n,
                   struct error *err)
{
    if (strlen(v) >= n)
        return error_set(err, "%s is too long", key);
    snprintf(out, n, "%s", v);
    return 0;
}

/* "30,14,7,1": strictly descending whole days, 1 to 3650. */
static int sec_cert_days(struct security_conf *c, const char *v,
                         struct error *err)
{
    int days[SECURITY_CERT_STEPS], n = 0;
    const char *p = v;
    while (*p) {
        char *end;
        errno = 0;
        long d = strtol(p, &end, 10);
        if (errno || end == p || d < 1 || d > 3650 || n == SECURITY_CERT_STEPS ||
            (n > 0 && d >= days[n - 1]) || (*end != ',' && *end != '\0'))
            return error_set(err, "alert_cert_days must be up to %d whole "
                             "numbers of days, descending, comma-separated "
                             "(e.g. 30,14,7,1), not '%s'", SECURITY_CERT_STEPS,
                             v);
        days[n++] = (int)d;
        p = *end == ',' ? end + 1 : end;
    }
    if (n == 0)
        return error_set(err, "alert_cert_days needs at least one step");
    memcpy(c->cert_days, days, sizeof(days));
    c->ncert_days = n;
    return 0;
}

static int sec_level(const char *key, const char *v, int *out,
                     struct error *err)
{
    enum alert_level l;
    if (alert_level_parse(v, &l) < 0)
        return error_set(err, "%s must be info, warning or critical, not "
                         "'%s'", key, v);
    *out = (int)l;
    return 0;
}

static int sec_url(const char *key, const char *v, const char *const *schemes,
                   char *out, size_t n, struct error *err)
{
    if (v[0] == '\0')
        return sec_str(key, v, out, n, err);
    for (size_t i = 0; schemes[i]; i++) {
        size_t k = strlen(schemes[i]);
        if (strncmp(v, schemes[i], k) == 0 && v[k] != '\0' && v[k] != '/' &&
            strchr(v, '@') == NULL && strpbrk(v, " \t\r\n") == NULL)
            return sec_str(key, v, out, n, err);
    }
    return error_set(err, "%s must be a %s%s%s URL with a host and no "
                     "credentials in it (they go in a sealed file: `wharf "
                     "notify credentials`), not '%s'", key, schemes[0],
                     schemes[1] ? " or " : "", schemes[1] ? schemes[1] : "",
                     v);
}

/* The thresholds of the detectors. 1 when key is not one of them. */
static int sec_set_alert(struct security_conf *c, const char *key,
                         const char *v, struct error *err)
{
    long long x;
    if (strcmp(key, "alert_check_seconds") == 0) {
        if (sec_int(key, v, 1, 86400, &x, err) < 0)
            return -1;
        c->check_ms = x * 1000;
    } else if (strcmp(key, "alert_connector_failing_seconds") == 0) {
        if (sec_int(key, v, 1, 7 * 86400, &x, err) < 0)
            return -1;
        c->connector_failing_ms = x * 1000;
    } else if (strcmp(key, "alert_disk_free_percent") == 0) {
        if (sec_int(key, v, 0, 99, &x, err) < 0)
            return -1;
        c->disk_free_percent = (int)x;
    } else if (strcmp(key, "alert_audit_verify_seconds") == 0) {
        if (sec_int(key, v, 0, 30 * 86400, &x, err) < 0)
            return -1;
        c->audit_verify_ms = x * 1000;
    } else if (strcmp(key, "alert_cert_days") == 0) {
        return sec_cert_days(c, v, err);
    } else {
        return 1;
    }
    return 0;
}

int security_conf_set(struct security_conf *c, const char *key,
                      const char *v, struct error *err)
{
    static const char *const mail[] = { "smtps://", "smtp://", NULL };
    static const char *const web[] = { "https://", NULL };
    if (strncmp(key, "alert_", 6) == 0)
        return sec_set_alert(c, key, v, err);
    if (strcmp(key, "notify_email_url") == 0)
        return sec_url(key, v, mail, c->email_url, sizeof(c->email_url), err);
    if (strcmp(key, "notify_email_from") == 0)
        return sec_str(key, v, c->email_from, sizeof(c->email_from), err);
    if (strcmp(key, "notify_email_to") == 0)
        return sec_str(key, v, c->email_to, sizeof(c->email_to), err);
    if (strcmp(key, "notify_email_level") == 0)
        return sec_level(key, v, &c->email_level, err);
    if (strcmp(key, "notify_webhook_url") == 0)
        return sec_url(key, v, web, c->webhook_url, sizeof(c->webhook_url),
                       err);
    if (strcmp(key, "notify_webhook_level") == 0)
        return sec_level(key, v, &c->webhook_level, err);
    if (strcmp(key, "notify_syslog") == 0) {
        if (v[0] && net_syslog_check(v, err) < 0) {
            error_prefix(err, "notify_syslog");
            return -1;
        }
        return sec_str(key, v, c->syslog, sizeof(c->syslog), err);
    }
    if (strcmp(key, "notify_syslog_level") == 0)
        return sec_level(key, v, &c->syslog_level, err);
    if (strcmp(key, "notify_ca_file") == 0) {
        if (v[0] && v[0] != '/')
            return error_set(err, "notify_ca_file must be an absolute path, "
                             "not '%s'", v);
        return sec_str(key, v, c->ca_file, sizeof(c->ca_file), err);
    }
    return 1;
}

/* An address list: at least one, each with one '@', no spaces or angle
 * brackets (they go into SMTP commands and headers). */
static int sec_addresses(const char *key, const char *list, int many,
                         struct error *err)
{
    int n = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *at = memchr(p, '@', len);
        if (len == 0 || at == NULL || at == p || at == p + len - 1 ||
            memchr(at + 1, '@', len - (size_t)(at + 1 - p)) != NULL)
            return error_set(err, "%s must be %s e-mail address%s "
                             "(name@domain), not '%s'", key,
                             many ? "comma-separated" : "one",
                             many ? "es" : "", list);
        for (size_t i = 0; i < len; i++)
            if (p[i] <= ' ' || p[i] == '<' || p[i] == '>' || p[i] == 0x7f)
                return error_set(err, "%s: '%s' has a space, a control "
                                 "character or an angle bracket", key, list);
        n++;
        p = end ? end + 1 : p + len;
    }
    if (n == 0 || (!many && n > 1))
        return error_set(err, "%s must be %s e-mail address%s", key,
                         many ? "one or more" : "one", many ? "es" : "");
    return 0;
}

int security_conf_final(const struct security_conf *c, struct error *err)
{
    if (c->email_url[0] == '\0') {
        if (c->email_from[0] || c->email_to[0])
            return error_set(err, "notify_email_from/notify_email_to are set "
                             "but notify_email_url is not");
        return 0;
    }
    if (sec_addresses("notify_email_from", c->email_from, 0, err) < 0 ||
        sec_addresses("notify_email_to", c->email_to, 1, err) < 0)
        return -1;
    return 0;
}
