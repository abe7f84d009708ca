/*
 * upkeep.h - what `wharf serve` does periodically besides moving messages:
 * the retention purge (R9, security/retention.h) and the health checks
 * whose problems /healthz and `wharf status` report (core/health.h):
 *
 *   listener_down  a listener's loop ended or stalled (net/server.h);
 *   disk_low       the data dir's file system has less than
 *                  disk_min_free_mb free (statvfs, for the server's user);
 *   audit_broken   `audit verify` of the trail fails;
 *   cert_expired   the listeners' certificate expired, or the AS2 profile
 *                  or a partner has no certificate that is still valid.
 *
 * One thread, its own store connection; the settings come from serve's
 * main thread (the only one that reads wharf.conf) through
 * upkeep_set_conf, at start and after every reload.
 */
#ifndef WHARF_SECURITY_UPKEEP_H
#define WHARF_SECURITY_UPKEEP_H

#include <jansson.h>
#include <stdint.h>

#include "util/error.h"

struct wharf;
struct store;
struct net_server;
struct upkeep;

/* The live settings (wharf.conf keys of the same names). */
struct upkeep_conf {
    int retention_days;
    int64_t purge_interval_ms;
    int64_t disk_min_free_mb;
    int64_t health_check_ms;
};

/* Set (serve's main thread) and read (any thread) the settings. */
void upkeep_set_conf(const struct upkeep_conf *c);
struct upkeep_conf upkeep_get_conf(void);

/* Start the thread: checks at once, then every health_check_ms; a purge
 * every purge_interval_ms. net may be NULL (no listener checks). w and net
 * must outlive it. Caller owns; upkeep_stop joins and frees. */
struct upkeep *upkeep_start(struct wharf *w, struct net_server *net,
                            struct error *err);
void upkeep_stop(struct upkeep *u);

/* The problems of the checks other than the listeners' now (disk, audit,
 * certificates), as health_checks() takes them. New reference. */
json_t *upkeep_check_now(struct wharf *w, struct store *st,
                         int64_t disk_min_free_mb);

/* Expiry (ms since the epoch) of the PEM certificate file path; -1 with
 * err when it cannot be read. */
int64_t upkeep_cert_file_expiry(const char *path, struct error *err);

#endif
