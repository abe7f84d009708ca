/*
 * proxy.c - the `proxy` key of connector configs (R2; see proxy.h for
 * its forms) and its resolution against wharf.conf's global proxy
 * through net_client_proxy_pick, the one rule.
 *
 * Owns the global proxy credentials a connector reads when it opens
 * (wiped when it closes). Must never: log, print or put into an error a
 * byte of a credential; accept credentials inside a proxy URL; take a
 * proxy from the environment.
 */
#include "connectors/proxy.h"

#include <string.h>

#include "connectors/connector.h"
#include "core/wharf.h"
#include "util/secret.h"

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int object_check(const json_t *px, struct error *err)
{
    static const char *const keys[] = { "url", "credentials_file",
                                        "no_proxy" };
    if (connector_keys_only(px, keys, sizeof(keys) / sizeof(*keys), "proxy",
                            err) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)px, k, v) {
        if (!json_is_string(v) && strcmp(k, "credentials_file"))
            return error_set(err, "proxy: %s must be a string", k);
    }
    const char *url = str(px, "url"), *np = str(px, "no_proxy");
    if (url == NULL)
        return error_set(err, "proxy needs url");
    if (net_client_proxy_check(url, err) < 0)
        return -1;
    if (np && net_client_no_proxy_check(np, err) < 0)
        return -1;
    return connector_secret_ok("proxy.credentials_file",
                               json_object_get(px, "credentials_file"), 0,
                               err);
}

int connector_proxy_check(const json_t *config, struct error *err)
{
    const json_t *px = json_object_get(config, "proxy");
    if (px == NULL)
        return 0;
    if (json_is_object(px))
        return object_check(px, err);
    if (!json_is_string(px))
        return error_set(err, "proxy must be a URL, \"direct\" or an object "
                         "{\"url\", \"credentials_file\", \"no_proxy\"}");
    if (strcmp(json_string_value(px), "direct") == 0)
        return 0;
    return net_client_proxy_check(json_string_value(px), err);
}

/* "user:password", checked without saying anything about its bytes. */
static int credentials_ok(const struct secret *s, const char *what,
                          struct error *err)
{
    const unsigned char *d = secret_data(s);
    size_t n = secret_len(s);
    const unsigned char *colon = n ? memchr(d, ':', n) : NULL;
    if (colon == NULL || colon == d)
        return error_set(err, "%s must hold user:password", what);
    return 0;
}

int connector_proxy_open(const struct connector *c, struct connector_proxy *p,
                         struct error *err)
{
    memset(p, 0, sizeof(*p));
    struct net_proxy own = {0}, global = {0};
    const json_t *px = json_object_get(c->config, "proxy");
    if (json_is_string(px)) {
        own.url = json_string_value(px);
    } else if (json_is_object(px)) {
        own.url = str(px, "url");
        own.no_proxy = str(px, "no_proxy");
        own.auth = connector_secret(c, "proxy.credentials_file");
        if (own.auth && credentials_ok(own.auth, "proxy.credentials_file",
                                       err) < 0)
            return -1;
    }
    const struct wharf_conf *conf = c->wharf ? &c->wharf->conf : NULL;
    if (conf && conf->proxy[0]) {
        global.url = conf->proxy;
        global.no_proxy = conf->no_proxy[0] ? conf->no_proxy : NULL;
    }
    p->from = net_client_proxy_pick(&own, &global, &p->use);
    if (p->from != NET_PROXY_GLOBAL || conf->proxy_credentials_file[0] == '\0')
        return 0;
    p->global_auth = secret_from_file(conf->proxy_credentials_file, err);
    if (p->global_auth == NULL) {
        error_prefix(err, "proxy_credentials_file of wharf.conf");
        return -1;
    }
    if (credentials_ok(p->global_auth, "proxy_credentials_file of wharf.conf",
                       err) < 0) {
        connector_proxy_close(p);
        return -1;
    }
    p->use.auth = p->global_auth;
    return 0;
}

void connector_proxy_close(struct connector_proxy *p)
{
    secret_free(p->global_auth);
    memset(p, 0, sizeof(*p));
}
