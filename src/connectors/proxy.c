/*
 * proxy.c - the `proxy` key of connector configs (R2; see proxy.h for
 * its forms) and its resolution against wharf.conf's global proxy by the
 * transport of the connector's environment (conn_net_proxy: the one rule,
 * net_client_proxy_pick).
 *
 * Owns the global proxy credentials a connector reads when it opens
 * (wiped when it closes). Must never: log, print or put into an error a
 * byte of a credential; accept credentials inside a proxy URL; take a
 * proxy from the environment.
 */
#include "connectors/proxy.h"

#include <string.h>

#include "connectors/connector.h"
#include "util/secret.h"

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

int connector_proxy_valid(const char *key, const json_t *v, struct error *err)
{
    if (json_is_string(v))
        return strcmp(json_string_value(v), "direct") == 0 ? 0
               : net_client_proxy_check(json_string_value(v), err);
    const char *url = str(v, "url"), *np = str(v, "no_proxy");
    if (url && net_client_proxy_check(url, err) < 0)
        return error_prefix(err, "%s.url", key), -1;
    if (np && net_client_no_proxy_check(np, err) < 0)
        return error_prefix(err, "%s.no_proxy", key), -1;
    return 0;
}

int connector_proxy_open(const struct connector *c, struct connector_proxy *p,
                         struct error *err)
{
    memset(p, 0, sizeof(*p));
    struct net_proxy own = {0};
    const json_t *px = json_object_get(c->config, "proxy");
    if (json_is_string(px)) {
        own.url = json_string_value(px);
    } else if (json_is_object(px)) {
        own.url = str(px, "url");
        own.no_proxy = str(px, "no_proxy");
        own.auth = connector_secret(c, "proxy.credentials_file");
        if (own.auth && net_client_proxy_auth_check(
                            own.auth, "proxy.credentials_file", err) < 0)
            return -1;
    }
    if (c->env == NULL) {       /* no data dir: only the connector's own */
        struct net_proxy none = {0};
        p->from = net_client_proxy_pick(&own, &none, &p->use);
        return 0;
    }
    return conn_net_proxy(c->env->net, &own, &p->use, &p->from,
                          &p->global_auth, err);
}

void connector_proxy_close(struct connector_proxy *p)
{
    secret_free(p->global_auth);
    memset(p, 0, sizeof(*p));
}
