/*
 * api_metrics.c - GET /metrics on the admin listener (R18): Prometheus text
 * with the hops by state, the addresses banned now, the build and the
 * start time. A route of the one route table (permission metrics.read);
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
#include <string.h>

#include "api/api.h"
#include "core/wharf.h"
#include "net/defender.h"
#include "net/server.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"

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

static int metrics_text(struct api_ctx *c, char *out, size_t n,
                        struct error *err)
{
    int64_t q, p, rt, sent, failed;
    if (store_hop_counts(c->st, &q, &p, &rt, &sent, &failed, err) < 0)
        return -1;
    int banned = metrics_server
                     ? defender_banned_count(net_server_defender(metrics_server))
                     : 0;
    int k = snprintf(out, n,
        "# HELP wharf_messages Message hops by state.\n"
        "# TYPE wharf_messages gauge\n"
        "wharf_messages{state=\"queued\"} %lld\n"
        "wharf_messages{state=\"processing\"} %lld\n"
        "wharf_messages{state=\"retrying\"} %lld\n"
        "wharf_messages{state=\"sent\"} %lld\n"
        "wharf_messages{state=\"failed\"} %lld\n"
        "# HELP wharf_banned_addresses Client addresses banned now.\n"
        "# TYPE wharf_banned_addresses gauge\n"
        "wharf_banned_addresses %d\n"
        "# HELP wharf_build_info Version of this build.\n"
        "# TYPE wharf_build_info gauge\n"
        "wharf_build_info{version=\"%s\"} 1\n"
        "# HELP process_start_time_seconds Start time of the process since "
        "unix epoch in seconds.\n"
        "# TYPE process_start_time_seconds gauge\n"
        "process_start_time_seconds %.3f\n",
        (long long)q, (long long)p, (long long)rt, (long long)sent,
        (long long)failed, banned, WHARF_VERSION,
        (double)metrics_start_ms / 1000.0);
    return (k < 0 || (size_t)k >= n) ? error_set(err, "metrics too long") : k;
}

int api_metrics(struct api_ctx *c)
{
    char text[4096];
    struct error err = {0};
    int n = metrics_text(c, text, sizeof(text), &err);
    if (n < 0) {
        log_error("metrics: %s", err.msg);
        return api_fail(c, 500, "internal", "metrics unavailable");
    }
    return net_reply(c->req, 200, "text/plain; version=0.0.4; charset=utf-8",
                     text, (size_t)n);
}
