/*
 * wharf.c - creating and opening a data directory, and parsing wharf.conf.
 *
 * Owns the layout of DIR (see wharf.h) and the rules that protect it:
 * init never touches an existing directory; open refuses a data dir or
 * keystore that group or others can read, with the command that fixes it.
 *
 * wharf.conf is `key = value` lines; '#' starts a comment. Unknown keys are
 * errors (a typo must not silently fall back to a default). A reload
 * (wharf_conf_reload, on SIGHUP) copies only the keys of conf_fields marked
 * live into the running configuration and names the others.
 */
#include "core/wharf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "core/dbpass.h"
#include "core/payloads.h"
#include "core/sandbox.h"
#include "net/allow.h"
#include "net/client.h"
#include "net/server.h"
#include "net/tls.h"
#include "store/store.h"
#include "util/confine.h"
#include "util/fsx.h"
#include "util/secret.h"
#include "vault/kms.h"
#include "vault/vault.h"

#define CONF_MAX (64 * 1024)

void conf_defaults(struct wharf_conf *c)
{
    memset(c, 0, sizeof(*c));
    c->log_level = LOG_INFO;
    snprintf(c->store, sizeof(c->store), "sqlite");
    c->workers = 2;
    c->large_workers = 1;
    c->large_payload_bytes = 8LL * 1024 * 1024;
    c->batch = 256;
    c->lease_ms = 60000;
    c->poll_ms = 1000;
    c->log_max_bytes = 10u * 1024 * 1024;
    c->log_keep = 5;
    snprintf(c->admin_listen, sizeof(c->admin_listen), "127.0.0.1:8443");
    snprintf(c->partner_listen, sizeof(c->partner_listen), "127.0.0.1:4080");
    snprintf(c->tls_cert, sizeof(c->tls_cert), "tls/cert.pem");
    snprintf(c->tls_key, sizeof(c->tls_key), "tls/key.pem");
    c->max_header_bytes = 16 * 1024;
    c->max_body_bytes = 1024 * 1024;
    c->request_timeout_ms = 30000;
    c->min_body_rate = 500;
    c->idle_timeout_ms = 5000;
    c->max_conns_per_address = 16;
    c->max_connections = 1024;
    c->http_threads = 32;
    c->ban_after_failures = 10;
    c->ban_seconds = 60;
    c->ban_window_seconds = 600;
    c->health_failing_ms = 60000;
    c->log_repeat_ms = 60000;
    c->login_concurrency = AUTH_PASSWORD_SLOTS;
    c->login_wait_ms = AUTH_PASSWORD_WAIT_MS;
    c->login_throttle_after = AUTH_THROTTLE_AFTER;
    c->login_throttle_window_seconds = (int)(AUTH_THROTTLE_WINDOW_MS / 1000);
    c->login_throttle_seconds = (int)(AUTH_THROTTLE_LOCK_MS / 1000);
    c->metrics_access = WHARF_METRICS_TOKEN;
    c->retention_days = 0;
    c->purge_interval_ms = 3600 * 1000;
    c->disk_min_free_mb = 512;
    c->health_check_ms = 60 * 1000;
    c->sandbox = 1;
    security_conf_defaults(&c->security);
}

/* Parse a decimal integer in [min, max]. */
static int conf_int(const char *key, const char *v, long long min,
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

static int conf_str(const char *key, const char *v, char *out, size_t n,
                    struct error *err)
{
    if (strlen(v) >= n)
        return error_set(err, "%s is too long", key);
    snprintf(out, n, "%s", v);
    return 0;
}

static int conf_listen(const char *key, const char *v, char *out, size_t n,
                       struct error *err)
{
    char host[64];
    int port;
    if (net_listen_parse(v, host, sizeof(host), &port, err) < 0) {
        error_prefix(err, "%s", key);
        return -1;
    }
    return conf_str(key, v, out, n, err);
}

/* The integer settings of the listeners and the defender. 1 when key is
 * not one of them. */
static int conf_set_net(struct wharf_conf *c, const char *key, const char *v,
                        struct error *err)
{
    static const struct {
        const char *key;
        long long min, max;
        size_t off;
    } ints[] = {
        { "max_header_bytes", 1024, 1024 * 1024,
          offsetof(struct wharf_conf, max_header_bytes) },
        { "request_timeout_ms", 100, 3600000,
          offsetof(struct wharf_conf, request_timeout_ms) },
        { "min_body_rate", 1, 1 << 30,
          offsetof(struct wharf_conf, min_body_rate) },
        { "idle_timeout_ms", 0, 3600000,
          offsetof(struct wharf_conf, idle_timeout_ms) },
        { "max_conns_per_address", 1, 100000,
          offsetof(struct wharf_conf, max_conns_per_address) },
        { "max_connections", 16, 100000,
          offsetof(struct wharf_conf, max_connections) },
        { "http_threads", 2, 1024, offsetof(struct wharf_conf, http_threads) },
        { "ban_after_failures", 1, 1000,
          offsetof(struct wharf_conf, ban_after_failures) },
        { "ban_seconds", 1, 86400, offsetof(struct wharf_conf, ban_seconds) },
        { "ban_window_seconds", 1, 86400,
          offsetof(struct wharf_conf, ban_window_seconds) },
        { "login_concurrency", 1, 64,
          offsetof(struct wharf_conf, login_concurrency) },
        { "login_wait_ms", 0, 60000,
          offsetof(struct wharf_conf, login_wait_ms) },
        { "login_throttle_after", 0, 100000,
          offsetof(struct wharf_conf, login_throttle_after) },
        { "login_throttle_window_seconds", 1, 86400,
          offsetof(struct wharf_conf, login_throttle_window_seconds) },
        { "login_throttle_seconds", 1, 86400,
          offsetof(struct wharf_conf, login_throttle_seconds) },
    };
    long long x;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        if (strcmp(key, ints[i].key) != 0)
            continue;
        if (conf_int(key, v, ints[i].min, ints[i].max, &x, err) < 0)
            return -1;
        *(int *)((char *)c + ints[i].off) = (int)x;
        return 0;
    }
    if (strcmp(key, "metrics_access") == 0) {
        static const char *const ways[] = { "token", "loopback", "off" };
        for (int i = 0; i < 3; i++) {
            if (strcmp(v, ways[i]) == 0) {
                c->metrics_access = i;
                return 0;
            }
        }
        return error_set(err, "metrics_access must be token, loopback or "
                         "off, not '%s'", v);
    }
    if (strcmp(key, "max_body_bytes") == 0) {
        if (conf_int(key, v, 1024, 1LL << 40, &x, err) < 0)
            return -1;
        c->max_body_bytes = x;
        return 0;
    }
    return 1;
}

/* The engine's lane for large messages. 1 when key is not one of its. */
static int conf_set_lanes(struct wharf_conf *c, const char *key,
                          const char *v, struct error *err)
{
    long long x;
    if (strcmp(key, "large_workers") == 0) {
        if (conf_int(key, v, 0, 64, &x, err) < 0)
            return -1;
        c->large_workers = (int)x;
        return 0;
    }
    if (strcmp(key, "large_payload_bytes") == 0) {
        if (conf_int(key, v, 1024, 1LL << 50, &x, err) < 0)
            return -1;
        c->large_payload_bytes = x;
        return 0;
    }
    return 1;
}

/* Paths of the listeners' TLS files. 1 when key is not one of them. */
static int conf_set_tls(struct wharf_conf *c, const char *key, const char *v,
                        struct error *err)
{
    if (strcmp(key, "tls_cert") == 0)
        return conf_str(key, v, c->tls_cert, sizeof(c->tls_cert), err);
    if (strcmp(key, "tls_key") == 0)
        return conf_str(key, v, c->tls_key, sizeof(c->tls_key), err);
    if (strcmp(key, "admin_client_ca") == 0)
        return conf_str(key, v, c->admin_client_ca,
                        sizeof(c->admin_client_ca), err);
    if (strcmp(key, "partner_client_ca") == 0)
        return conf_str(key, v, c->partner_client_ca,
                        sizeof(c->partner_client_ca), err);
    return 1;
}

/* The listeners' allow-lists (R2). 1 when key is not one of them. */
static int conf_set_allow(struct wharf_conf *c, const char *key,
                          const char *v, struct error *err)
{
    struct net_allow a;
    char *dst = strcmp(key, "admin_allow_from") == 0 ? c->admin_allow_from
                : strcmp(key, "partner_allow_from") == 0
                ? c->partner_allow_from : NULL;
    if (dst == NULL)
        return 1;
    if (net_allow_parse(&a, v, err) < 0)
        return error_prefix(err, "%s", key), -1;
    return conf_str(key, v, dst, sizeof(c->admin_allow_from), err);
}

/* The global outbound proxy (R2). 1 when key is not one of its keys. */
static int conf_set_proxy(struct wharf_conf *c, const char *key,
                          const char *v, struct error *err)
{
    if (strcmp(key, "proxy") == 0) {
        if (v[0] && net_client_proxy_check(v, err) < 0)
            return -1;
        return conf_str(key, v, c->proxy, sizeof(c->proxy), err);
    }
    if (strcmp(key, "proxy_credentials_file") == 0) {
        if (v[0] && v[0] != '/')
            return error_set(err, "proxy_credentials_file must be an "
                             "absolute path, not '%s'", v);
        return conf_str(key, v, c->proxy_credentials_file,
                        sizeof(c->proxy_credentials_file), err);
    }
    if (strcmp(key, "allowed_paths") == 0)
        return conf_str(key, v, c->allowed_paths, sizeof(c->allowed_paths),
                        err);
    if (strcmp(key, "no_proxy") == 0) {
        if (v[0] && net_client_no_proxy_check(v, err) < 0)
            return -1;
        return conf_str(key, v, c->no_proxy, sizeof(c->no_proxy), err);
    }
    return 1;
}

/* Retention and serve's periodic checks. 1 when key is not one of them. */
static int conf_set_upkeep(struct wharf_conf *c, const char *key,
                           const char *v, struct error *err)
{
    long long x;
    if (strcmp(key, "retention_days") == 0) {
        if (conf_int(key, v, 0, 36500, &x, err) < 0)
            return -1;
        c->retention_days = (int)x;
    } else if (strcmp(key, "purge_interval_seconds") == 0) {
        if (conf_int(key, v, 1, 86400, &x, err) < 0)
            return -1;
        c->purge_interval_ms = x * 1000;
    } else if (strcmp(key, "disk_min_free_mb") == 0) {
        if (conf_int(key, v, 0, 1LL << 30, &x, err) < 0)
            return -1;
        c->disk_min_free_mb = x;
    } else if (strcmp(key, "health_check_seconds") == 0) {
        if (conf_int(key, v, 1, 3600, &x, err) < 0)
            return -1;
        c->health_check_ms = x * 1000;
    } else {
        return 1;
    }
    return 0;
}

/* yes/no (on/off) into *out. */
static int conf_bool(const char *key, const char *v, const char *yes,
                     const char *no, int *out, struct error *err)
{
    if (strcmp(v, yes) == 0 || strcmp(v, no) == 0) {
        *out = strcmp(v, yes) == 0;
        return 0;
    }
    return error_set(err, "%s must be %s or %s, not '%s'", key, yes, no, v);
}

/* store = sqlite | postgresql://...; payload_dir = /absolute/folder */
static int conf_set_store(struct wharf_conf *c, const char *key,
                          const char *v, struct error *err)
{
    if (strcmp(key, "payload_dir") == 0) {
        if (v[0] != '\0' && v[0] != '/' && strcmp(v, "database") != 0)
            return error_set(err, "payload_dir must be an absolute path "
                             "or database, not '%s'", v);
        return conf_str(key, v, c->payload_dir, sizeof(c->payload_dir), err);
    }
    if (strcmp(v, "sqlite") != 0 && strncmp(v, "postgresql://", 13) != 0 &&
        strncmp(v, "postgres://", 11) != 0)
        return error_set(err, "store must be sqlite or a postgresql:// URL");
    if (store_url_check(v, err) < 0)        /* no password; TLS if remote */
        return -1;
    return conf_str(key, v, c->store, sizeof(c->store), err);
}

/* Who serve runs as and its sandbox (R22). 1 when key is not one of them. */
static int conf_set_privs(struct wharf_conf *c, const char *key,
                          const char *v, struct error *err)
{
    if (strcmp(key, "user") == 0 || strcmp(key, "group") == 0) {
        char *out = key[0] == 'u' ? c->user : c->group;
        if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") != strlen(v) || v[0] == '-')
            return error_set(err, "%s must be an account name (letters, "
                             "digits, '.', '_', '-'), not '%s'", key, v);
        return conf_str(key, v, out, sizeof(c->user), err);
    }
    if (strcmp(key, "allow_root") == 0)
        return conf_bool(key, v, "yes", "no", &c->allow_root, err);
    if (strcmp(key, "store") == 0 || strcmp(key, "payload_dir") == 0)
        return conf_set_store(c, key, v, err);
    if (strcmp(key, "sandbox") == 0)
        return conf_bool(key, v, "on", "off", &c->sandbox, err);
    if (strcmp(key, "kms_command") == 0) {
        if (v[0] && kms_check(v, err) < 0)
            return -1;
        return conf_str(key, v, c->kms_command, sizeof(c->kms_command),
                        err);
    }
    return 1;
}

/* 1 when line sets key (spaces, the key, spaces, '='). */
static int conf_line_is(const char *line, const char *key)
{
    size_t k = strlen(key);
    line += strspn(line, " \t");
    if (strncmp(line, key, k) != 0)
        return 0;
    line += k;
    line += strspn(line, " \t");
    return *line == '=';
}

/* text with the store and payload_dir lines replaced: malloc'ed. */
static char *conf_with_store(const char *text, const char *store,
                             const char *pd)
{
    size_t cap = strlen(text) + strlen(store) + strlen(pd) + 64;
    char *out = malloc(cap);
    size_t n = 0;
    int seen_store = 0, seen_pd = 0;
    for (const char *l = text; out != NULL && *l != '\0';) {
        size_t len = strcspn(l, "\n");
        int is_store = conf_line_is(l, "store") && !seen_store;
        int is_pd = conf_line_is(l, "payload_dir") && !seen_pd;
        if (is_store || is_pd)
            n += (size_t)snprintf(out + n, cap - n, "%s =%s%s\n",
                                  is_store ? "store" : "payload_dir",
                                  is_store || pd[0] ? " " : "",
                                  is_store ? store : pd);
        else
            n += (size_t)snprintf(out + n, cap - n, "%.*s\n", (int)len, l);
        seen_store |= is_store;
        seen_pd |= is_pd;
        l += len + (l[len] == '\n');
    }
    if (out != NULL && !seen_store)
        n += (size_t)snprintf(out + n, cap - n, "store = %s\n", store);
    if (out != NULL && !seen_pd)
        snprintf(out + n, cap - n, "payload_dir =%s%s\n", pd[0] ? " " : "",
                 pd);
    return out;
}

int wharf_conf_store_check(const char *store, const char *payload_dir,
                           struct error *err)
{
    struct wharf_conf c;
    store = store != NULL ? store : "sqlite";
    payload_dir = payload_dir != NULL ? payload_dir : "";
    if (strchr(store, '\n') || strchr(payload_dir, '\n') ||
        strchr(store, '#') || strchr(payload_dir, '#'))
        return error_set(err, "store and payload_dir must be one line "
                         "without '#'");
    if (conf_set_store(&c, "store", store, err) != 0 ||
        conf_set_store(&c, "payload_dir", payload_dir, err) != 0)
        return -1;
    if (strcmp(payload_dir, "database") == 0 && strcmp(store, "sqlite") == 0)
        return error_set(err, "payload_dir = database needs a PostgreSQL "
                         "store: a SQLite node keeps payload files");
    return 0;
}

int wharf_conf_set_store(const char *conf_path, const char *store,
                         const char *payload_dir, struct error *err)
{
    char *text = NULL;
    size_t len = 0;
    store = store != NULL ? store : "sqlite";
    payload_dir = payload_dir != NULL ? payload_dir : "";
    if (wharf_conf_store_check(store, payload_dir, err) != 0 ||
        fsx_read_all(conf_path, 1 << 20, &text, &len, err) != 0)
        return -1;
    struct wharf_conf now;
    struct error ignored = {0};
    int same = conf_parse(text, len, &now, &ignored) == 0 &&
               strcmp(now.store[0] ? now.store : "sqlite", store) == 0 &&
               strcmp(now.payload_dir, payload_dir) == 0;
    char *out = same ? NULL : conf_with_store(text, store, payload_dir);
    free(text);
    if (same)               /* already so: the file stays byte for byte */
        return 0;
    if (out == NULL)
        return error_set(err, "out of memory");
    int rc = fsx_write_atomic(conf_path, out, strlen(out), 0600, err);
    free(out);
    return rc;
}

/* Settings that only make sense together, once every line is read. */
static int conf_final(const struct wharf_conf *c, struct error *err)
{
    if (c->proxy[0] == '\0' && c->proxy_credentials_file[0])
        return error_set(err, "proxy_credentials_file is set but proxy is "
                         "not");
    if (c->proxy[0] == '\0' && c->no_proxy[0])
        return error_set(err, "no_proxy is set but proxy is not");
    if (c->user[0] == '\0' && c->group[0])
        return error_set(err, "group is set but user is not");
    return security_conf_final(&c->security, err);
}

static int conf_set(struct wharf_conf *c, const char *key, const char *v,
                    struct error *err)
{
    long long x;
    if (strcmp(key, "log_level") == 0) {
        if (log_level_parse(v, &c->log_level) < 0)
            return error_set(err, "log_level must be error, warning, info, "
                             "debug or trace, not '%s'", v);
        return 0;
    }
    if (strcmp(key, "workers") == 0) {
        if (conf_int(key, v, 1, 64, &x, err) < 0) return -1;
        c->workers = (int)x;
    } else if (strcmp(key, "batch") == 0) {
        if (conf_int(key, v, 1, 4096, &x, err) < 0) return -1;
        c->batch = (int)x;
    } else if (strcmp(key, "lease_seconds") == 0) {
        if (conf_int(key, v, 1, 86400, &x, err) < 0) return -1;
        c->lease_ms = x * 1000;
    } else if (strcmp(key, "poll_ms") == 0) {
        if (conf_int(key, v, 10, 3600000, &x, err) < 0) return -1;
        c->poll_ms = x;
    } else if (strcmp(key, "log_max_bytes") == 0) {
        if (conf_int(key, v, 4096, 1LL << 40, &x, err) < 0) return -1;
        c->log_max_bytes = (size_t)x;
    } else if (strcmp(key, "log_keep") == 0) {
        if (conf_int(key, v, 1, 100, &x, err) < 0) return -1;
        c->log_keep = (int)x;
    } else if (strcmp(key, "log_repeat_seconds") == 0) {
        if (conf_int(key, v, 0, 86400, &x, err) < 0) return -1;
        c->log_repeat_ms = x * 1000;
    } else if (strcmp(key, "health_failing_seconds") == 0) {
        if (conf_int(key, v, 0, 86400, &x, err) < 0) return -1;
        c->health_failing_ms = x * 1000;
    } else if (strcmp(key, "admin_listen") == 0) {
        return conf_listen(key, v, c->admin_listen, sizeof(c->admin_listen),
                           err);
    } else if (strcmp(key, "partner_listen") == 0) {
        return conf_listen(key, v, c->partner_listen,
                           sizeof(c->partner_listen), err);
    } else {
        int rc = conf_set_net(c, key, v, err);
        if (rc == 1)
            rc = conf_set_tls(c, key, v, err);
        if (rc == 1)
            rc = conf_set_allow(c, key, v, err);
        if (rc == 1)
            rc = conf_set_proxy(c, key, v, err);
        if (rc == 1)
            rc = conf_set_lanes(c, key, v, err);
        if (rc == 1)
            rc = conf_set_upkeep(c, key, v, err);
        if (rc == 1)
            rc = conf_set_privs(c, key, v, err);
        if (rc == 1)
            rc = security_conf_set(&c->security, key, v, err);
        if (rc == 1)
            return error_set(err, "unknown setting '%s'", key);
        return rc;
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int conf_line(struct wharf_conf *c, char *line, int lineno,
                     struct error *err)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    char *s = trim(line);
    if (*s == '\0')
        return 0;
    char *eq = strchr(s, '=');
    if (eq == NULL)
        return error_set(err, "line %d: expected 'key = value'", lineno);
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    if (*key == '\0')
        return error_set(err, "line %d: missing key before '='", lineno);
    if (conf_set(c, key, val, err) < 0) {
        error_prefix(err, "line %d", lineno);
        return -1;
    }
    return 0;
}

int conf_parse(const char *text, size_t len, struct wharf_conf *c,
               struct error *err)
{
    conf_defaults(c);
    if (len > CONF_MAX)
        return error_set(err, "configuration is larger than %d bytes",
                         CONF_MAX);
    if (memchr(text, '\0', len))
        return error_set(err, "configuration contains a NUL byte");
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return error_set(err, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    int rc = 0, lineno = 0;
    for (char *p = copy; p != NULL && rc == 0;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        rc = conf_line(c, p, ++lineno, err);
        p = nl ? nl + 1 : NULL;
    }
    free(copy);
    return rc == 0 ? conf_final(c, err) : rc;
}

int wharf_path(const struct wharf *w, const char *rel, char *out, size_t n)
{
    /* payloads/... is under payload_dir, which may be a shared folder */
    const char *slash = strchr(rel, '/');
    int k = slash && strncmp(rel, "payloads/", 9) == 0
            ? snprintf(out, n, "%s/%s", w->payload_dir, slash + 1)
            : snprintf(out, n, "%s/%s", w->dir, rel);
    return (k < 0 || (size_t)k >= n) ? -1 : 0;
}

static int layout(struct wharf *w, const char *dir, struct error *err)
{
    if (strlen(dir) == 0 || strlen(dir) >= sizeof(w->dir))
        return error_set(err, "data directory path is empty or too long");
    snprintf(w->dir, sizeof(w->dir), "%s", dir);
    size_t n = strlen(w->dir);
    while (n > 1 && w->dir[n - 1] == '/')
        w->dir[--n] = '\0';
    if (wharf_path(w, "wharf.db", w->db_path, sizeof(w->db_path)) < 0 ||
        wharf_path(w, "keystore", w->keystore_path,
                   sizeof(w->keystore_path)) < 0 ||
        wharf_path(w, "wharf.conf", w->conf_path, sizeof(w->conf_path)) < 0 ||
        wharf_path(w, "payloads", w->payload_dir,
                   sizeof(w->payload_dir)) < 0 ||
        wharf_path(w, "logs", w->log_dir, sizeof(w->log_dir)) < 0)
        return error_set(err, "data directory path is too long");
    return 0;
}

bool wharf_store_shared(const struct wharf *w)
{
    return strncmp(w->db_path, "postgres", 8) == 0;
}

/* Where the database and the payloads are: wharf.conf's store and
 * payload_dir (or init's options) over layout()'s defaults. A PostgreSQL
 * store's password comes from pgpass in the data dir when there is one
 * (libpq reads PGPASSFILE; one set by the caller wins). */
static int place_store(struct wharf *w, const char *store,
                       const char *payload_dir, struct error *err)
{
    if (store && strcmp(store, "sqlite") != 0 &&
        snprintf(w->db_path, sizeof(w->db_path), "%s", store) >=
            (int)sizeof(w->db_path))
        return error_set(err, "store URL is too long");
    w->payloads_in_db = payload_dir && strcmp(payload_dir, "database") == 0;
    if (w->payloads_in_db && !wharf_store_shared(w))
        return error_set(err, "payload_dir = database needs a PostgreSQL "
                         "store (store = postgresql://...): a SQLite node "
                         "keeps payload files");
    if (payload_dir && payload_dir[0] && !w->payloads_in_db &&
        snprintf(w->payload_dir, sizeof(w->payload_dir), "%s",
                 payload_dir) >= (int)sizeof(w->payload_dir))
        return error_set(err, "payload_dir is too long");
    char pgpass[4300];
    snprintf(pgpass, sizeof(pgpass), "%s/pgpass", w->dir);
    if (wharf_store_shared(w) && getenv("PGPASSFILE") == NULL &&
        access(pgpass, R_OK) == 0)
        setenv("PGPASSFILE", pgpass, 0);
    return 0;
}

/* init --keystore: the cluster's master key, copied (0600). */
static int keystore_copy(const struct wharf *w, const char *from,
                         struct error *err)
{
    char *data = NULL;
    size_t len = 0;
    if (fsx_read_all(from, 1 << 20, &data, &len, err) < 0)
        return -1;
    int rc = fsx_write_atomic(w->keystore_path, data, len, 0600, err);
    free(data);
    if (rc < 0)
        return -1;
    struct vault *v = vault_open(w->keystore_path, err);
    if (v == NULL) {
        error_prefix(err, "--keystore %s", from);
        return -1;
    }
    vault_close(v);
    return 0;
}

static int write_conf(const struct wharf *w, const char *level,
                      const struct wharf_init_opts *o, struct error *err)
{
    char text[8192];
    int n = snprintf(text, sizeof(text),
        "# wharf.conf: settings of this data directory (key = value).\n"
        "# Connectors, flows and partners live in the database:\n"
        "# manage them with `wharf flow import/export`.\n"
        "log_level = %s\n"
        "workers = 2\n"
        "batch = 256\n"
        "lease_seconds = 60\n"
        "\n"
        "# HTTPS listeners (IPv4:PORT). The admin listener serves the API,\n"
        "# /healthz and /metrics; the partner listener only AS2 and webhooks.\n"
        "admin_listen = %s\n"
        "partner_listen = %s\n"
        "# Certificate and key of both listeners (relative to this folder).\n"
        "tls_cert = tls/cert.pem\n"
        "tls_key = tls/key.pem\n"
        "# Mutual TLS: a CA file per listener makes client certificates\n"
        "# mandatory (empty: none asked).\n"
        "admin_client_ca =\n"
        "partner_client_ca =\n"
        "# Addresses each listener accepts, IPv4 addresses or networks\n"
        "# (192.0.2.0/24), comma-separated; empty: every address. Others\n"
        "# are closed at accept, before TLS.\n"
        "admin_allow_from =\n"
        "partner_allow_from =\n"
        "\n"
        "# Limits of both listeners.\n"
        "max_header_bytes = 16384\n"
        "max_body_bytes = 1048576\n"
        "request_timeout_ms = 30000\n"
        "min_body_rate = 500\n"
        "idle_timeout_ms = 5000\n"
        "max_conns_per_address = 16\n"
        "max_connections = 1024\n"
        "http_threads = 32\n"
        "# Ban an address after repeated authentication failures.\n"
        "ban_after_failures = 10\n"
        "ban_window_seconds = 600\n"
        "ban_seconds = 60\n"
        "# Logins: password checks at once (64 MiB each) and the wait for\n"
        "# one; a user name is locked after this many failed logins.\n"
        "login_concurrency = 2\n"
        "login_wait_ms = 2000\n"
        "login_throttle_after = 20\n"
        "login_throttle_window_seconds = 900\n"
        "login_throttle_seconds = 60\n"
        "# GET /metrics: token (metrics.read), loopback (no credentials,\n"
        "# local clients only: weaker) or off.\n"
        "metrics_access = token\n"
        "\n"
        "# Outbound proxy of every connector without its own \"proxy\":\n"
        "# http://, https://, socks5:// or socks5h://HOST:PORT (empty: none);\n"
        "# credentials as user:password in a 0600 file; no_proxy: hosts,\n"
        "# domains or addresses (comma-separated) that go direct.\n"
        "proxy =\n"
        "proxy_credentials_file =\n"
        "no_proxy =\n"
        "\n"
        "# The folders a flow may name (file connectors' folders, secret\n"
        "# files): absolute paths, comma-separated, never inside this data\n"
        "# directory. Empty: flows may name no folder at all.\n"
        "allowed_paths = %s\n"
        "\n"
        "# Retention (R9): messages older than this many days are purged\n"
        "# (payload keys shredded, files and rows deleted; held messages\n"
        "# stay); a connector's own retention_days wins. 0: keep for ever.\n"
        "retention_days = 0\n"
        "purge_interval_seconds = 3600\n"
        "# /healthz: free space of this folder under this many MiB is a\n"
        "# problem; disk, audit chain, certificates and listeners are\n"
        "# checked this often.\n"
        "disk_min_free_mb = 512\n"
        "health_check_seconds = 60\n"
        "\n"
        "# Privileges. serve started as root binds its listeners, then runs\n"
        "# as this user (who must own this folder; group: the user's own\n"
        "# unless set). Without a user, serve refuses to run as root unless\n"
        "# allow_root = yes (flagged: it would parse partners' input as root).\n"
        "user = %s\n"
        "group =\n"
        "allow_root = no\n"
        "# no_new_privs, a seccomp filter and Landlock around serve (R22).\n"
        "# off only to diagnose a refused system call or file.\n"
        "sandbox = on\n"
        "# An external KMS that seals the keystore (R15): the absolute path\n"
        "# of a program that wraps and unwraps a key (docs/operations.md,\n"
        "# \"A KMS for the keystore\"); then `wharf key kms-seal`. Empty: the\n"
        "# keystore holds its keys as text (mode 0600).\n"
        "kms_command =%s%s\n"
        "\n"
        "# The database (R21): sqlite (wharf.db in this folder: one node), or\n"
        "# a postgresql://USER@HOST:PORT/DB URL that every node of a cluster\n"
        "# names (sslmode=verify-full and sslrootcert=... as URL parameters;\n"
        "# the password in pgpass in this folder, libpq's format, mode 0600).\n"
        "store = %s\n"
        "# Where payloads are kept (absolute; empty: payloads/ here). The\n"
        "# nodes of a cluster name one shared folder.\n"
        "payload_dir = %s\n"
        "\n"
        "# Alerts (R19): the detectors' thresholds (defaults shown) and where\n"
        "# notifications go: nowhere unless set here (docs/operations.md,\n"
        "# \"Alerts and notifications\"). Credentials: `wharf notify\n"
        "# credentials email|webhook FILE`.\n"
        "# alert_check_seconds = 60\n"
        "# alert_connector_failing_seconds = 300\n"
        "# alert_disk_free_percent = 10\n"
        "# alert_cert_days = 30,14,7,1\n"
        "# alert_audit_verify_seconds = 3600\n"
        "# notify_email_url = smtps://mail.example.com:465\n"
        "# notify_email_from = wharf@example.com\n"
        "# notify_email_to = security@example.com\n"
        "# notify_email_level = warning\n"
        "# notify_webhook_url = https://soc.example.com/hooks/wharf\n"
        "# notify_webhook_level = warning\n"
        "# notify_syslog = unix:/dev/log\n"
        "# notify_syslog_level = info\n",
        level, o->admin_listen, o->partner_listen,
        o->allowed_paths ? o->allowed_paths : "", o->user ? o->user : "",
        o->kms_command ? " " : "", o->kms_command ? o->kms_command : "",
        o->store ? o->store : "sqlite",
        o->payload_dir ? o->payload_dir : "");
    if (n < 0 || (size_t)n >= sizeof(text))
        return error_set(err, "wharf.conf template too long");
    return fsx_write_atomic(w->conf_path, text, (size_t)n, 0600, err);
}

/* init --store-password-file: sealed with the new keystore, and used by
 * the connections init makes. */
static int init_store_password(struct wharf *w, const struct secret *pw,
                               struct error *err)
{
    if (pw == NULL)
        return 0;
    if (!wharf_store_shared(w))
        return error_set(err, "--store-password-file is for a PostgreSQL "
                         "store (--store postgresql://...)");
    struct vault *v = vault_open(w->keystore_path, err);
    int rc = v == NULL ? -1 : dbpass_save(v, w->dir, pw, err);
    vault_close(v);
    return rc < 0 ? -1 : store_password_set(pw, err);
}

static int init_contents(struct wharf *w, const char *level,
                         const struct wharf_init_opts *o, struct error *err)
{
    if (o->payload_dir && o->payload_dir[0] && !w->payloads_in_db) {
        if (fsx_mkdir_p(w->payload_dir, 0700, err) < 0)   /* may be shared */
            return -1;
    } else if (mkdir(w->payload_dir, 0700) < 0) {
        return error_errno(err, errno, "cannot create %s", w->payload_dir);
    }
    if (mkdir(w->log_dir, 0700) < 0)
        return error_errno(err, errno, "cannot create %s", w->log_dir);
    char state[4300];
    snprintf(state, sizeof(state), "%s/state", w->dir);
    if (mkdir(state, 0700) < 0)
        return error_errno(err, errno, "cannot create %s", state);
    if (o->kms_command && kms_check(o->kms_command, err) < 0)
        return error_prefix(err, "--kms-command"), -1;
    kms_set(o->kms_command);        /* the new keystore sealed by it */
    if (write_conf(w, level, o, err) < 0 ||
        (o->keystore ? keystore_copy(w, o->keystore, err)
                     : vault_create(w->keystore_path, err)) < 0 ||
        tls_init_data_dir(w->dir, err) < 0 ||
        init_store_password(w, o->store_password, err) < 0)
        return -1;
    struct store *st = store_open(w->db_path, err);
    if (st == NULL)
        return -1;
    store_close(st);
    if (wharf_store_shared(w))
        return fsx_fsync_dir(w->dir, err);
    if (chmod(w->db_path, 0600) < 0)
        return error_errno(err, errno, "cannot chmod %s", w->db_path);
    return fsx_fsync_dir(w->dir, err);
}

/* Give what dirfd holds to uid:gid (wharf init --user), subfolders too
 * (tls/, payloads/, logs/), never following a symlink. Closes dirfd. */
static int init_chown_tree(int dirfd, const char *path, uid_t uid, gid_t gid,
                           struct error *err)
{
    DIR *d = fdopendir(dirfd);
    if (d == NULL) {
        close(dirfd);
        return error_errno(err, errno, "cannot list %s", path);
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (fchownat(dirfd, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
            rc = error_errno(err, errno, "cannot chown %s/%s", path,
                             e->d_name);
        else if (e->d_type == DT_DIR) {
            int sub = openat(dirfd, e->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = sub < 0 ? error_errno(err, errno, "cannot open %s/%s", path,
                                       e->d_name)
                         : init_chown_tree(sub, e->d_name, uid, gid, err);
        }
    }
    closedir(d);
    return rc;
}

int wharf_init_give(const char *dir, const char *user, struct error *err)
{
    uid_t uid;
    gid_t gid;
    if (sandbox_account(user, "", &uid, &gid, err) < 0)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot open %s", dir);
    if (fchown(fd, uid, gid) < 0) {
        int e = errno;
        close(fd);
        return error_errno(err, e, "cannot give %s to %s (--user needs "
                           "root)", dir, user);
    }
    return init_chown_tree(fd, dir, uid, gid, err);
}

/* --user: an account that exists and is not root (root is allow_root). */
static int init_check_user(const char *user, struct error *err)
{
    uid_t uid;
    gid_t gid;
    struct wharf_conf c;
    conf_defaults(&c);
    if (conf_set_privs(&c, "user", user, err) != 0 ||
        sandbox_account(user, "", &uid, &gid, err) < 0) {
        error_prefix(err, "--user");
        return -1;
    }
    if (uid == 0)
        return error_set(err, "--user must not be root: to keep serve "
                         "running as root, set allow_root = yes instead");
    return 0;
}

int wharf_init(const char *dir, const struct wharf_init_opts *o,
               struct error *err)
{
    struct wharf w;
    memset(&w, 0, sizeof(w));
    enum log_level lv;
    const char *level = (o && o->log_level) ? o->log_level : "info";
    if (log_level_parse(level, &lv) < 0)
        return error_set(err, "--log-level must be error, warning, info, "
                         "debug or trace, not '%s'", level);
    struct wharf_init_opts opts = {
        .admin_listen = (o && o->admin_listen) ? o->admin_listen
                                                : "127.0.0.1:8443",
        .partner_listen = (o && o->partner_listen) ? o->partner_listen
                                                    : "127.0.0.1:4080",
        .allowed_paths = o ? o->allowed_paths : NULL,
        .user = o ? o->user : NULL,
        .kms_command = o ? o->kms_command : NULL,
        .store = o ? o->store : NULL,
        .keystore = o ? o->keystore : NULL,
        .payload_dir = o ? o->payload_dir : NULL,
        .store_password = o ? o->store_password : NULL,
    };
    if (opts.store && (strchr(opts.store, '\n') || strchr(opts.store, '#')))
        return error_set(err, "--store must be one line without '#'");
    if (opts.kms_command && (strchr(opts.kms_command, '\n') ||
                             strchr(opts.kms_command, '#')))
        return error_set(err, "--kms-command must be one line without '#'");
    if (opts.payload_dir && strcmp(opts.payload_dir, "database") != 0 &&
        (opts.payload_dir[0] != '/' || strchr(opts.payload_dir, '\n') ||
         strchr(opts.payload_dir, '#')))
        return error_set(err, "--payload-dir must be an absolute path or "
                         "database");
    if (opts.user && init_check_user(opts.user, err) < 0)
        return -1;
    if (opts.allowed_paths && (strchr(opts.allowed_paths, '\n') ||
                               strchr(opts.allowed_paths, '#')))
        return error_set(err, "--allowed-paths must be one line of "
                         "comma-separated folders");
    char host[64];
    int port;
    if (net_listen_parse(opts.admin_listen, host, sizeof(host), &port,
                         err) < 0) {
        error_prefix(err, "--admin-listen");
        return -1;
    }
    if (net_listen_parse(opts.partner_listen, host, sizeof(host), &port,
                         err) < 0) {
        error_prefix(err, "--partner-listen");
        return -1;
    }
    if (layout(&w, dir, err) < 0)
        return -1;
    if (opts.store) {       /* what wharf.conf will say, checked now */
        struct wharf_conf c;
        conf_defaults(&c);
        if (conf_set_store(&c, "store", opts.store, err) < 0) {
            error_prefix(err, "--store");
            return -1;
        }
    }
    if (mkdir(w.dir, 0700) < 0) {
        if (errno == EEXIST)
            return error_set(err, "%s already exists; wharf init never "
                             "overwrites a data directory", w.dir);
        return error_errno(err, errno, "cannot create %s", w.dir);
    }
    if (place_store(&w, opts.store, opts.payload_dir, err) < 0 ||
        init_contents(&w, log_level_name(lv), &opts, err) < 0) {
        fsx_remove_tree(w.dir, true);      /* made by this call */
        error_prefix(err, "init of %s failed (nothing of it was left)",
                     w.dir);
        return -1;
    }
    char parent[4096];
    if (fsx_dirname(w.dir, parent, sizeof(parent)) == 0)
        fsx_fsync_dir(parent, NULL);
    return 0;
}

static int check_private(const char *path, const char *what, int must_dir,
                         struct error *err)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return error_errno(err, errno, "%s %s", what, path);
    if (must_dir && !S_ISDIR(sb.st_mode))
        return error_set(err, "%s %s is not a directory", what, path);
    if (sb.st_mode & 077)
        return error_set(err, "%s %s is accessible by group or others "
                         "(mode %04o); run: chmod %s %s", what, path,
                         (unsigned)(sb.st_mode & 07777),
                         must_dir ? "700" : "600", path);
    return 0;
}

static int conf_read(const char *path, struct wharf_conf *c,
                     struct error *err)
{
    char *text = NULL;
    size_t len = 0;
    if (fsx_read_all(path, CONF_MAX, &text, &len, err) < 0)
        return -1;
    int rc = conf_parse(text, len, c, err);
    free(text);
    if (rc < 0)
        error_prefix(err, "%s", path);
    return rc;
}

static int read_conf(struct wharf *w, struct error *err)
{
    return conf_read(w->conf_path, &w->conf, err);
}

/* ---- reload ------------------------------------------------------------------- */

/* Every key of wharf.conf, where it lands in struct wharf_conf, and
 * whether a running serve applies a change (live) or needs a restart. */
struct conf_field {
    const char *key;
    size_t off, size;
    bool str, live;
};
#define CONF_F(key, field, str, live) { key, \
    offsetof(struct wharf_conf, field), \
    sizeof(((struct wharf_conf *)0)->field), str, live }
#define WHARF_CONF_LIVE true
#define WHARF_CONF_RESTART false

static const struct conf_field conf_fields[] = {
    CONF_F("log_level", log_level, false, WHARF_CONF_LIVE),
    CONF_F("log_max_bytes", log_max_bytes, false, WHARF_CONF_LIVE),
    CONF_F("log_keep", log_keep, false, WHARF_CONF_LIVE),
    CONF_F("log_repeat_seconds", log_repeat_ms, false, WHARF_CONF_LIVE),
    CONF_F("health_failing_seconds", health_failing_ms, false,
           WHARF_CONF_LIVE),
    CONF_F("ban_after_failures", ban_after_failures, false, WHARF_CONF_LIVE),
    CONF_F("ban_seconds", ban_seconds, false, WHARF_CONF_LIVE),
    CONF_F("ban_window_seconds", ban_window_seconds, false, WHARF_CONF_LIVE),
    CONF_F("workers", workers, false, WHARF_CONF_RESTART),
    CONF_F("batch", batch, false, WHARF_CONF_RESTART),
    CONF_F("lease_seconds", lease_ms, false, WHARF_CONF_RESTART),
    CONF_F("poll_ms", poll_ms, false, WHARF_CONF_RESTART),
    CONF_F("admin_listen", admin_listen, true, WHARF_CONF_RESTART),
    CONF_F("partner_listen", partner_listen, true, WHARF_CONF_RESTART),
    CONF_F("tls_cert", tls_cert, true, WHARF_CONF_RESTART),
    CONF_F("tls_key", tls_key, true, WHARF_CONF_RESTART),
    CONF_F("admin_client_ca", admin_client_ca, true, WHARF_CONF_RESTART),
    CONF_F("partner_client_ca", partner_client_ca, true, WHARF_CONF_RESTART),
    CONF_F("admin_allow_from", admin_allow_from, true, WHARF_CONF_RESTART),
    CONF_F("partner_allow_from", partner_allow_from, true,
           WHARF_CONF_RESTART),
    CONF_F("max_header_bytes", max_header_bytes, false, WHARF_CONF_RESTART),
    CONF_F("max_body_bytes", max_body_bytes, false, WHARF_CONF_RESTART),
    CONF_F("request_timeout_ms", request_timeout_ms, false,
           WHARF_CONF_RESTART),
    CONF_F("min_body_rate", min_body_rate, false, WHARF_CONF_RESTART),
    CONF_F("idle_timeout_ms", idle_timeout_ms, false, WHARF_CONF_RESTART),
    CONF_F("max_conns_per_address", max_conns_per_address, false,
           WHARF_CONF_RESTART),
    CONF_F("max_connections", max_connections, false, WHARF_CONF_RESTART),
    CONF_F("http_threads", http_threads, false, WHARF_CONF_RESTART),
    CONF_F("proxy", proxy, true, WHARF_CONF_RESTART),
    CONF_F("proxy_credentials_file", proxy_credentials_file, true,
           WHARF_CONF_RESTART),
    CONF_F("no_proxy", no_proxy, true, WHARF_CONF_RESTART),
    CONF_F("allowed_paths", allowed_paths, true, WHARF_CONF_LIVE),
    CONF_F("retention_days", retention_days, false, WHARF_CONF_LIVE),
    CONF_F("purge_interval_seconds", purge_interval_ms, false,
           WHARF_CONF_LIVE),
    CONF_F("disk_min_free_mb", disk_min_free_mb, false, WHARF_CONF_LIVE),
    CONF_F("health_check_seconds", health_check_ms, false, WHARF_CONF_LIVE),
    CONF_F("user", user, true, WHARF_CONF_RESTART),
    CONF_F("group", group, true, WHARF_CONF_RESTART),
    CONF_F("allow_root", allow_root, false, WHARF_CONF_RESTART),
    CONF_F("sandbox", sandbox, false, WHARF_CONF_RESTART),
    CONF_F("kms_command", kms_command, true, WHARF_CONF_RESTART),
    CONF_F("store", store, true, WHARF_CONF_RESTART),
    CONF_F("payload_dir", payload_dir, true, WHARF_CONF_RESTART),
    /* every alert_* and notify_* key (security/security_conf.h) */
    CONF_F("alert_* and notify_* settings", security, false,
           WHARF_CONF_LIVE),
};
_Static_assert(sizeof(conf_fields) / sizeof(conf_fields[0]) <= WHARF_CONF_KEYS,
               "struct wharf_reload is too small for every key");

static bool conf_field_differs(const struct conf_field *f,
                               const struct wharf_conf *a,
                               const struct wharf_conf *b)
{
    const char *x = (const char *)a + f->off, *y = (const char *)b + f->off;
    return f->str ? strcmp(x, y) != 0 : memcmp(x, y, f->size) != 0;
}

int wharf_conf_reload(struct wharf *w, struct wharf_reload *out,
                      struct error *err)
{
    struct wharf_conf c;
    memset(out, 0, sizeof(*out));
    if (conf_read(w->conf_path, &c, err) < 0)
        return -1;
    /* the folders flows may name: a root that is refused refuses it all */
    if (strcmp(c.allowed_paths, w->conf.allowed_paths) != 0) {
        if (confine_configure(w->dir, c.allowed_paths, err) < 0)
            return -1;
        /* Landlock's view was fixed at start (core/sandbox.h) */
        if (w->conf.sandbox)
            log_warn("reload: allowed_paths changed: folders taken out are "
                     "refused now; folders added are reachable after a "
                     "restart (sandbox = on fixed the file system view at "
                     "start)");
    }
    for (size_t i = 0; i < sizeof(conf_fields) / sizeof(conf_fields[0]); i++) {
        const struct conf_field *f = &conf_fields[i];
        if (!conf_field_differs(f, &w->conf, &c))
            continue;
        if (f->live) {
            memcpy((char *)&w->conf + f->off, (const char *)&c + f->off,
                   f->size);
            out->live[out->nlive++] = f->key;
        } else {
            out->restart[out->nrestart++] = f->key;
        }
    }
    return 0;
}

static int open_steps(struct wharf *w, const char *dir, struct error *err)
{
    if (layout(w, dir, err) < 0 ||
        check_private(w->dir, "data directory", 1, err) < 0 ||
        read_conf(w, err) < 0 ||
        place_store(w, w->conf.store, w->conf.payload_dir, err) < 0)
        return -1;
    if (!wharf_store_shared(w) && access(w->db_path, R_OK | W_OK) < 0)
        return error_errno(err, errno, "database %s", w->db_path);
    if (confine_configure(w->dir, w->conf.allowed_paths, err) < 0) {
        error_prefix(err, "%s", w->conf_path);
        return -1;
    }
    kms_set(w->conf.kms_command);   /* a sealed keystore's KMS */
    w->keystore_sealed = vault_keystore_sealed(w->keystore_path);
    w->vault = vault_open(w->keystore_path, err);
    if (w->vault == NULL)
        return -1;
    return wharf_store_shared(w) && dbpass_load(w->vault, w->dir, err) < 0
           ? -1 : 0;
}

struct wharf *wharf_open(const char *dir, struct error *err)
{
    struct wharf *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    if (open_steps(w, dir, err) < 0) {
        wharf_close(w);
        return NULL;
    }
    if (wharf_store_shared(w))      /* the trail is anchored in w->dir */
        audit_set_node_dir(w->db_path, w->dir);
    return w;
}

void wharf_close(struct wharf *w)
{
    if (w == NULL)
        return;
    if (wharf_store_shared(w))
        audit_set_node_dir(NULL, NULL);
    wharf_payloads_close(w);
    vault_close(w->vault);
    free(w);
}

/* ---- one store connection per thread -------------------------------------- */

static pthread_key_t store_key;
static pthread_once_t store_once = PTHREAD_ONCE_INIT;

static void store_key_free(void *p)
{
    store_close(p);
}

static void store_key_init(void)
{
    pthread_key_create(&store_key, store_key_free);
}

struct store *wharf_store(struct wharf *w, struct error *err)
{
    pthread_once(&store_once, store_key_init);
    struct store *st = pthread_getspecific(store_key);
    if (st != NULL && !store_opened_from(st, w->db_path)) {
        store_close(st);        /* another data dir (tests): a new one */
        pthread_setspecific(store_key, NULL);
        st = NULL;
    }
    if (st == NULL && (st = store_open(w->db_path, err)) != NULL &&
        pthread_setspecific(store_key, st) != 0) {
        store_close(st);
        st = NULL;
        error_set(err, "cannot keep a store connection for this thread");
    }
    return st;
}

const struct net_proxy *wharf_proxy(const struct wharf *w, struct net_proxy *px,
                                    struct secret **auth, struct error *err)
{
    *auth = NULL;
    if (w->conf.proxy[0] == '\0')
        return NULL;
    if (w->conf.proxy_credentials_file[0] &&
        (*auth = net_client_proxy_auth_read(w->conf.proxy_credentials_file,
                     "proxy_credentials_file of wharf.conf", err)) == NULL)
        return NULL;
    px->url = w->conf.proxy;
    px->no_proxy = w->conf.no_proxy[0] ? w->conf.no_proxy : NULL;
    px->auth = *auth;
    return px;
}
