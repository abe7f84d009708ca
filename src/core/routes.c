/*
 * routes.c - the partner listener's routes that lead into connectors
 * (webhook, AS2): one route per connector type that has route(), at the
 * type's route_prefix, registered by `wharf serve`.
 *
 * The routes use the engine's current flow generation (engine_flow: the
 * one live instance of each connector, the same the workers deliver
 * with), held for the request; a request that finds the stored generation
 * moved has the engine load it first (engine_reload), so a new webhook or
 * partner works at once, without a restart. A request goes to the type's
 * route_pick(), which chooses one of that type's connectors by path or
 * headers (404 when none), then to its route() with an intake towards the
 * connector's next hops.
 *
 * A request no connector takes (an unknown partner or path) is 404, a
 * failure of its address for the defender (R22: it may ban it), and an
 * ALERT line: the first of an address, then its 10th, 100th, ... within
 * ten minutes (the count goes with it), so a flood cannot fill the log.
 *
 * Owns the per-route user data and the small table of recent refusals by
 * address (the flow is the engine's). It must never answer 2xx itself:
 * only a connector's route(), after intake_commit().
 */
#include "core/engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/connector.h"
#include "core/flow.h"
#include "core/intake.h"
#include "core/wharf.h"
#include "net/server.h"
#include "security/alerts.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"

#define MAX_ROUTED_TYPES 8
#define REFUSED_SLOTS 64            /* addresses whose 404s are counted */
#define REFUSED_WINDOW_MS (10 * 60 * 1000)

struct partner_routes;

struct routed_type {
    struct partner_routes *pr;
    const struct connector_type *type;
};

/* Recent 404s of one address (for the ALERT lines only: the defender
 * keeps its own count). */
struct refused_addr {
    char address[64];
    int64_t count, last_ms;
};

struct partner_routes {
    struct engine *e;
    pthread_mutex_t refused_mu;
    struct refused_addr refused[REFUSED_SLOTS];
    struct routed_type types[MAX_ROUTED_TYPES];
    size_t ntypes;
};

/* The type's connectors of generation f (array malloc'ed; the connectors
 * belong to f). */
static size_t conns_of(const struct flow *f, const struct connector_type *t,
                       struct connector ***out)
{
    size_t n = 0;
    *out = calloc(f ? f->nconns + 1 : 1, sizeof(**out));
    for (size_t i = 0; *out && f && i < f->nconns; i++)
        if (f->conns[i]->type == t)
            (*out)[n++] = f->conns[i];
    return n;
}

/* Count a 404 of address; its count when an ALERT line is due (the 1st,
 * 10th, 100th, ... within the window), else 0. The slot of an address
 * quiet for longest is reused when the table is full. */
static int64_t refused_count(struct partner_routes *pr, const char *address)
{
    int64_t now = time_now_ms(), count;
    pthread_mutex_lock(&pr->refused_mu);
    struct refused_addr *slot = &pr->refused[0];
    for (size_t i = 0; i < REFUSED_SLOTS; i++) {
        struct refused_addr *a = &pr->refused[i];
        if (strcmp(a->address, address) == 0) {
            slot = a;
            break;
        }
        if (a->last_ms < slot->last_ms)
            slot = a;
    }
    if (strcmp(slot->address, address) != 0 ||
        now - slot->last_ms > REFUSED_WINDOW_MS) {
        snprintf(slot->address, sizeof(slot->address), "%s", address);
        slot->count = 0;
    }
    slot->last_ms = now;
    count = ++slot->count;
    pthread_mutex_unlock(&pr->refused_mu);
    int64_t k = count;
    while (k >= 10 && k % 10 == 0)
        k /= 10;
    return k == 1 ? count : 0;
}

static void refuse_unrouted(struct partner_routes *pr,
                            const struct connector_type *t,
                            struct net_request *req)
{
    net_req_auth_failure(req);
    int64_t count = refused_count(pr, net_req_address(req));
    char summary[600], key[200];
    snprintf(summary, sizeof(summary), "%s request to %.200s from %s "
             "refused: no %s connector takes it (unknown partner or path)",
             t->name, net_req_path(req), net_req_address(req), t->name);
    snprintf(key, sizeof(key), "%s %s", t->name, net_req_address(req));
    /* R19: one alert per address (its opening is the ALERT line), the
     * rest fold into it */
    alert_raise("partner.unknown_route", key, ALERT_WARNING, summary, NULL);
    if (count > 1)
        log_warn("%lld %s requests from %s refused within minutes: no %s "
                 "connector takes them (unknown partner or path; the last "
                 "to %s)", (long long)count, t->name, net_req_address(req),
                 t->name, net_req_path(req));
    net_reply_error(req, 404, "not_found", "no %s connector takes this "
                    "request", t->name);
}

static void dispatch(struct partner_routes *pr, const struct flow *f,
                     const struct connector_type *t, struct net_request *req,
                     struct store *st)
{
    struct connector **cs;
    size_t n = conns_of(f, t, &cs);
    struct connector *c = cs ? t->route_pick(cs, n, req) : NULL;
    free(cs);
    if (c == NULL) {
        refuse_unrouted(pr, t, req);
        return;
    }
    const char **next = NULL;
    size_t nnext = flow_next(f, c->name, &next);
    struct http_exchange x = {
        .req = req, .in = intake_new(engine_wharf(pr->e), st, c->name, next,
                                     nnext),
    };
    if (x.in == NULL || c->type->route(c, &x) != WH_OK)
        net_reply_error(req, x.in ? 500 : 503, x.in ? "internal"
                        : "unavailable", "try again later");
    intake_free(x.in);
    free(next);
}

static int route_handler(struct net_request *req, void *ud)
{
    struct routed_type *rt = ud;
    struct partner_routes *pr = rt->pr;
    struct error err = {0};
    struct store *st = wharf_store(engine_wharf(pr->e), &err);
    int64_t gen = st ? store_flow_generation(st, &err) : -1;
    if (gen < 0) {
        log_error("%s route: %s", rt->type->name, err.msg);
        return net_reply_error(req, 503, "unavailable", "try again later"), 0;
    }
    engine_reload(pr->e, st, gen, &err);    /* failed: the running one */
    struct flow *f = engine_flow(pr->e);
    dispatch(pr, f, rt->type, req, st);
    flow_free(f);
    return 0;
}

struct partner_routes *partner_routes_register(struct net_server *s,
                                               struct engine *e,
                                               struct error *err)
{
    struct partner_routes *pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return error_set(err, "out of memory"), NULL;
    pr->e = e;
    pthread_mutex_init(&pr->refused_mu, NULL);
    const struct connector_type *const *types;
    size_t nt = connector_types(&types);
    for (size_t i = 0; i < nt && pr->ntypes < MAX_ROUTED_TYPES; i++) {
        const struct connector_type *t = types[i];
        if (!t->route || !t->route_prefix || !t->route_pick)
            continue;
        struct routed_type *rt = &pr->types[pr->ntypes++];
        rt->pr = pr;
        rt->type = t;
        if (net_route_capped(net_listener(s, NET_PARTNER), "POST",
                             t->route_prefix, t->route_max_body,
                             route_handler, rt) < 0) {
            partner_routes_free(pr);
            error_set(err, "cannot route %s on the partner listener",
                      t->route_prefix);
            return NULL;
        }
    }
    return pr;
}

void partner_routes_free(struct partner_routes *pr)
{
    if (pr == NULL)
        return;
    pthread_mutex_destroy(&pr->refused_mu);
    free(pr);
}
