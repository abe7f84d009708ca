/*
 * proxy.h - the `proxy` key of the connectors that connect out (http,
 * sftp): one syntax, one check, one rule (net_client_proxy_pick) for all.
 *
 *   "proxy": "http://HOST:PORT" | "socks5h://HOST:PORT" | ...   a URL
 *   "proxy": "direct"               no proxy, not even wharf.conf's
 *   "proxy": {"url": .., "credentials_file": .., "no_proxy": "a,b"}
 *   (absent)                        wharf.conf's proxy, if any
 *
 * credentials_file ("user:password") is a secret file sealed at flow
 * import: a type that accepts `proxy` lists "proxy.credentials_file" in
 * its .secrets.
 */
#ifndef WHARF_CONNECTOR_PROXY_H
#define WHARF_CONNECTOR_PROXY_H

#include <jansson.h>

#include "net/client.h"
#include "util/error.h"

struct connector;
struct secret;

struct connector_proxy {
    struct net_proxy use;       /* what to hand curl; borrows from the
                                   connector and wharf.conf */
    enum net_proxy_from from;
    struct secret *global_auth; /* owned: wharf.conf's credentials */
};

/* For check(): the `proxy` key of config, if any, is well-formed. */
int connector_proxy_check(const json_t *config, struct error *err);

/* For open(): the proxy c uses. Reads wharf.conf's credentials file when
 * the global proxy applies. 0, or -1 with err (never the credentials). */
int connector_proxy_open(const struct connector *c, struct connector_proxy *p,
                         struct error *err);

/* Frees what connector_proxy_open read. */
void connector_proxy_close(struct connector_proxy *p);

#endif
