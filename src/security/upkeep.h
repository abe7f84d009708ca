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
 * One thread, its own store connection; the settings (retention_days,
 * purge_interval_seconds, disk_min_free_mb, health_check_seconds) come
 * from serve's main thread through upkeep_set_conf.
 */
#ifndef WHARF_SECURITY_UPKEEP_H
#define WHARF_SECURITY_UPKEEP_H

#include <jansson.h>
#include <stdint.h>

#include "core/wharf.h"
#include "util/error.h"

struct store;
struct net_server;
struct upkeep;

/* The running configuration, published by serve's main thread (the only
 * one that writes w->conf) at start and after every reload, and read by
 * any other thread that needs a live key (the upkeep thread, the API's
 * purge and posture report): a copy under a mutex. */
void upkeep_set_conf(const struct wharf_conf *c);
void upkeep_get_conf(struct wharf_conf *out);

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
