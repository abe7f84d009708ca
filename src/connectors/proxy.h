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
 * import. A type that accepts `proxy` puts CONN_PROXY_OPTIONS in its
 * option table (connector.h): the key, its members, their checks.
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

/* The valid() of the "proxy" option: a URL net/client.c accepts,
 * "direct", or an object whose url and no_proxy it accepts (the table
 * checks its keys and types). */
int connector_proxy_valid(const char *key, const json_t *v, struct error *err);

#define CONN_PROXY_OPTIONS \
    { "proxy", CONN_PROXY, CONN_ADVANCED, NULL, 0, 0, NULL, NULL, \
      "\"http://HOST:PORT\", \"socks5h://HOST:PORT\", \"direct\" (not " \
      "even wharf.conf's proxy) or an object; absent: wharf.conf's proxy", \
      connector_proxy_valid }, \
    { "proxy.url", CONN_STRING, CONN_REQUIRED, NULL, 0, 0, NULL, NULL, \
      "the proxy: http://, socks5:// or socks5h://HOST:PORT", NULL }, \
    { "proxy.credentials_file", CONN_SECRET, 0, NULL, 0, 0, NULL, NULL, \
      "user:password for the proxy", NULL }, \
    { "proxy.no_proxy", CONN_STRING, 0, NULL, 0, 0, NULL, NULL, \
      "hosts reached directly: \"a.example,b.example\"", NULL }

/* For open(): the proxy c uses. Reads wharf.conf's credentials file when
 * the global proxy applies. 0, or -1 with err (never the credentials). */
int connector_proxy_open(const struct connector *c, struct connector_proxy *p,
                         struct error *err);

/* Frees what connector_proxy_open read. */
void connector_proxy_close(struct connector_proxy *p);

#endif
