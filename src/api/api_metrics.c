/*
 * api_metrics.c - GET /metrics on the admin listener (R7, R18): Prometheus
 * text with the hops by state and per connector (queue depth), messages by
 * state, per connector counters (messages and bytes in and out, failed
 * attempts) and delivery latency histograms (core/metrics.h), certificate
 * expiry timestamps, live alerts by level, the
 * addresses banned now, the connections the listeners refused at accept,
 * the build and the start time. A route of the one route table (permission metrics.read);
 * who may read it is wharf.conf's metrics_access:
 *   token     (default) a bearer token or session holding metrics.read,
 *             like every other route;
 *   loopback  clients on 127.0.0.0/8 or ::1 without credentials (for a
 *             local scraper that has none; weaker: every local process,
 *             and anything that can relay through one, reads them);
 *   off       404 for everyone.
 *
 * Owns the metrics text and nothing else. Must never: put a message's
 * content, a name of a person or a credential in the metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/metrics.h"
#include "core/wharf.h"
#include "net/defender.h"
#include "net/server.h"
#include "security/upkeep.h"
#include "store/partner_store.h"
#include "store/posture_store.h"
#include "store/security_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"
#include "util/strbuf.h"

static struct net_server *metrics_server;   /* set once, before serving */
static int64_t metrics_start_ms;

void api_metrics_init(struct net_server *s)
{
    metrics_server = s;
    metrics_start_ms = time_now_ms();
}

static bool loopback(const char *addr)
{
    return addr && (strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0);
}

int api_metrics_gate(struct api_ctx *c)
{
    switch (c->w->conf.metrics_access) {
    case WHARF_METRICS_OFF:
        api_fail(c, 404, "not_found", "no such route (metrics_access = off)");
        return 1;
    case WHARF_METRICS_LOOPBACK:
        if (loopback(net_req_address(c->req)))
            return 2;
        api_fail(c, 403, "forbidden", "metrics are served to local clients "
                 "only (metrics_access = loopback)");
        return 1;
    default:
        return 0;
    }
}

/* ---- the text, built in a growing buffer ---------------------------------------- */

/* A label value with \, " and newlines escaped (Prometheus text format). */
static const char *mb_label(const char *v, char *out, size_t n)
{
    size_t k = 0;
    for (; v && *v && k + 3 < n; v++) {
        if (*v == '\\' || *v == '"') {
            out[k++] = '\\';
            out[k++] = *v;
        } else if (*v == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = *v;
        }
    }
    out[k] = '\0';
    return out;
}

static void mb_head(struct strbuf *b, const char *name, const char *type,
                    const char *help)
{
    strbuf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- the parts ------------------------------------------------------------------- */

static int metrics_hops(struct api_ctx *c, struct strbuf *b, struct error *err)
{
    int64_t q, p, rt, sent, failed;
    if (store_hop_counts(c->st, &q, &p, &rt, &sent, &failed, err) < 0)
        return -1;
    mb_head(b, "wharf_messages", "gauge", "Message hops by state.");
    strbuf_addf(b, "wharf_messages{state=\"queued\"} %lld\n"
           "wharf_messages{state=\"processing\"} %lld\n"
           "wharf_messages{state=\"retrying\"} %lld\n"
           "wharf_messages{state=\"sent\"} %lld\n"
           "wharf_messages{state=\"failed\"} %lld\n", (long long)q,
           (long long)p, (long long)rt, (long long)sent, (long long)failed);
    struct store_count *cs;
    size_t n;
    if (store_hop_counts_by_connector(c->st, &cs, &n, err) < 0)
        return -1;
    mb_head(b, "wharf_queue_depth", "gauge", "Hops of each connector by "
            "state (queued, processing, retrying: the queue; failed: parked "
            "until resent).");
    for (size_t i = 0; i < n; i++) {
        char l1[256], l2[64];
        strbuf_addf(b, "wharf_queue_depth{connector=\"%s\",state=\"%s\"} %lld\n",
               mb_label(cs[i].name, l1, sizeof(l1)),
               mb_label(cs[i].state, l2, sizeof(l2)), (long long)cs[i].n);
    }
    store_counts_free(cs, n);
    if (store_message_counts(c->st, &cs, &n, err) < 0)
        return -1;
    mb_head(b, "wharf_message_states", "gauge", "Messages by state.");
    for (size_t i = 0; i < n; i++) {
        char l2[64];
        strbuf_addf(b, "wharf_message_states{state=\"%s\"} %lld\n",
               mb_label(cs[i].state, l2, sizeof(l2)), (long long)cs[i].n);
    }
    store_counts_free(cs, n);
    return 0;
}

static void metrics_counter_rows(const struct metrics_row *r, void *arg)
{
    struct strbuf *b = arg;
    char l[256];
    mb_label(r->connector, l, sizeof(l));
    strbuf_addf(b, "wharf_connector_messages_total{connector=\"%s\","
           "direction=\"in\"} %lld\n"
           "wharf_connector_messages_total{connector=\"%s\","
           "direction=\"out\"} %lld\n"
           "wharf_connector_bytes_total{connector=\"%s\",direction=\"in\"} "
           "%lld\n"
           "wharf_connector_bytes_total{connector=\"%s\",direction=\"out\"} "
           "%lld\n"
           "wharf_connector_failures_total{connector=\"%s\",kind=\"retry\"} "
           "%lld\n"
           "wharf_connector_failures_total{connector=\"%s\",kind=\"failed\"} "
           "%lld\n", l, (long long)r->in_messages, l,
           (long long)r->out_messages, l, (long long)r->in_bytes, l,
           (long long)r->out_bytes, l, (long long)r->retries, l,
           (long long)r->failures);
}

static void metrics_latency_rows(const struct metrics_row *r, void *arg)
{
    struct strbuf *b = arg;
    char l[256];
    mb_label(r->connector, l, sizeof(l));
    for (int i = 0; i < METRICS_BUCKETS; i++)
        strbuf_addf(b, "wharf_delivery_latency_seconds_bucket{connector=\"%s\","
               "le=\"%g\"} %lld\n", l, metrics_bucket_le[i],
               (long long)r->buckets[i]);
    strbuf_addf(b, "wharf_delivery_latency_seconds_bucket{connector=\"%s\","
           "le=\"+Inf\"} %lld\n"
           "wharf_delivery_latency_seconds_sum{connector=\"%s\"} %.3f\n"
           "wharf_delivery_latency_seconds_count{connector=\"%s\"} %lld\n",
           l, (long long)r->buckets[METRICS_BUCKETS], l, r->latency_sum, l,
           (long long)r->buckets[METRICS_BUCKETS]);
}

static void metrics_counters(struct strbuf *b)
{
    mb_head(b, "wharf_connector_messages_total", "counter", "Messages taken "
            "in (in) or delivered (out) by a connector since start.");
    mb_head(b, "wharf_connector_bytes_total", "counter", "Payload bytes of "
            "those messages.");
    mb_head(b, "wharf_connector_failures_total", "counter", "Failed delivery "
            "attempts (retry: tried again later; failed: parked).");
    metrics_each(metrics_counter_rows, b);
    mb_head(b, "wharf_delivery_latency_seconds", "histogram", "From a "
            "message's intake to its delivery by a connector.");
    metrics_each(metrics_latency_rows, b);
}

static int metrics_certs(struct api_ctx *c, struct strbuf *b, struct error *err)
{
    struct store_cert *cs;
    size_t n;
    if (store_certs_list(c->st, NULL, 0, &cs, &n, err) < 0)
        return -1;
    mb_head(b, "wharf_certificate_expiry_timestamp_seconds", "gauge",
            "When a certificate expires (owner: a partner, (profile), or "
            "listener; certificate: the first 16 hex digits of its SHA-256).");
    for (size_t i = 0; i < n; i++) {
        char l[256];
        strbuf_addf(b, "wharf_certificate_expiry_timestamp_seconds{owner=\"%s\","
               "certificate=\"%.16s\"} %lld\n", mb_label(cs[i].owner[0]
               ? cs[i].owner : "(profile)", l, sizeof(l)), cs[i].id,
               (long long)(cs[i].not_after / 1000));
    }
    store_certs_free(cs, n);
    char path[4200];
    struct error ignored = {0};
    const char *cert = c->w->conf.tls_cert;
    if (cert[0] == '/')
        snprintf(path, sizeof(path), "%s", cert);
    else if (wharf_path(c->w, cert, path, sizeof(path)) < 0)
        return 0;
    int64_t until = upkeep_cert_file_expiry(path, &ignored);
    if (until > 0)
        strbuf_addf(b, "wharf_certificate_expiry_timestamp_seconds{owner="
               "\"listener\",certificate=\"tls_cert\"} %lld\n",
               (long long)(until / 1000));
    return 0;
}

/* Live alerts (not resolved) by level (R19, store/security_store.h). */
static int metrics_alerts(struct api_ctx *c, struct strbuf *b,
                          struct error *err)
{
    static const char *const levels[3] = { "info", "warning", "critical" };
    int64_t n[3];
    if (store_alert_counts(c->st, n, err) < 0)
        return -1;
    mb_head(b, "wharf_alerts", "gauge", "Live (not resolved) alerts by "
            "level.");
    for (int i = 0; i < 3; i++)
        strbuf_addf(b, "wharf_alerts{level=\"%s\"} %lld\n", levels[i],
               (long long)n[i]);
    return 0;
}

/* Connections each listener closed at accept, by reason (net/server.h):
 * what an allow-list, a ban or a limit kept out, which the log has at
 * debug level only. */
static void metrics_refused(struct strbuf *b)
{
    static const char *const names[NET_LISTENERS] = { "admin", "partner" };
    mb_head(b, "wharf_connections_refused_total", "counter", "Connections a "
            "listener closed at accept, before any TLS work, since start "
            "(reason: allow_list, banned, per_address, max_connections).");
    for (int w = 0; metrics_server && w < NET_LISTENERS; w++)
        for (int r = 0; r < NET_REFUSED_N; r++)
            strbuf_addf(b, "wharf_connections_refused_total{listener=\"%s\","
                        "reason=\"%s\"} %lld\n", names[w],
                        net_refusal_name((enum net_refusal)r),
                        (long long)net_server_refused(metrics_server,
                            (enum net_which)w, (enum net_refusal)r));
}

static int metrics_text(struct api_ctx *c, struct strbuf *b, struct error *err)
{
    if (metrics_hops(c, b, err) < 0)
        return -1;
    metrics_counters(b);
    if (metrics_certs(c, b, err) < 0 || metrics_alerts(c, b, err) < 0)
        return -1;
    int banned = metrics_server
                     ? defender_banned_count(net_server_defender(metrics_server))
                     : 0;
    mb_head(b, "wharf_banned_addresses", "gauge", "Client addresses banned "
            "now.");
    strbuf_addf(b, "wharf_banned_addresses %d\n", banned);
    metrics_refused(b);
    mb_head(b, "wharf_build_info", "gauge", "Version of this build.");
    strbuf_addf(b, "wharf_build_info{version=\"%s\"} 1\n", WHARF_VERSION);
    mb_head(b, "process_start_time_seconds", "gauge", "Start time of the "
            "process since unix epoch in seconds.");
    strbuf_addf(b, "process_start_time_seconds %.3f\n",
           (double)metrics_start_ms / 1000.0);
    return b->failed ? error_set(err, "out of memory") : 0;
}

int api_metrics(struct api_ctx *c)
{
    struct strbuf b = {0};
    struct error err = {0};
    if (metrics_text(c, &b, &err) < 0) {
        strbuf_free(&b);
        log_error("metrics: %s", err.msg);
        return api_fail(c, 500, "internal", "metrics unavailable");
    }
    int rc = net_reply(c->req, 200, "text/plain; version=0.0.4; "
                       "charset=utf-8", b.p, b.len);
    strbuf_free(&b);
    return rc;
}
