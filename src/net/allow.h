/*
 * allow.h - address allow-lists (R2): which IPv4 addresses may connect to
 * a listener (wharf.conf's admin_allow_from and partner_allow_from,
 * checked at accept, before any TLS work), send as a trading partner (a
 * partner's allow_from: connectors/as2_recv.c) or POST to a webhook (the
 * webhook connector's allow_from). An empty list allows every address.
 *
 * An entry is an address ("192.0.2.7") or a network in CIDR form
 * ("192.0.2.0/24", host bits zero). The listeners take IPv4 connections
 * only, so an IPv6 entry is an error that says so. Lists are written
 * comma- or space-separated in wharf.conf and as JSON arrays of strings
 * in the flow document and connector options.
 *
 * The struct is a plain value (no allocation): copy it freely.
 */
#ifndef WHARF_NET_ALLOW_H
#define WHARF_NET_ALLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/error.h"

#define NET_ALLOW_MAX 64

struct net_allow {
    size_t n;                       /* 0: every address */
    uint32_t net[NET_ALLOW_MAX];    /* host byte order, host bits zero */
    uint32_t mask[NET_ALLOW_MAX];
};

/* Add one entry (an address or a CIDR network) to a. 0, or -1 with err
 * naming the entry and what is wrong with it. */
int net_allow_add(struct net_allow *a, const char *entry, struct error *err);

/* a = the entries of list, separated by commas and/or spaces ("" or NULL:
 * empty, every address). 0, or -1 with err (a is then empty). */
int net_allow_parse(struct net_allow *a, const char *list, struct error *err);

/* a = the entries of a JSON array of strings (NULL: empty). 0, or -1 with
 * err (a is then empty). */
int net_allow_json(struct net_allow *a, const json_t *list, struct error *err);

/* Whether a allows addr (IPv4, host byte order): true when a is empty. */
bool net_allow_has(const struct net_allow *a, uint32_t addr);

/* The same for a dotted-quad address; false for text that is not one
 * (unless a is empty). */
bool net_allow_has_text(const struct net_allow *a, const char *addr);

#endif
