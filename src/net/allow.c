/*
 * allow.c - address allow-lists (allow.h): parsing "192.0.2.0/24" style
 * entries strictly (inet_pton for the address: no octal, no short forms;
 * a prefix of 0-32 decimal digits; host bits must be zero, so that a list
 * means what it reads as) and matching an IPv4 address against them.
 *
 * Owns nothing: a struct net_allow is a value. Must never accept an entry
 * it cannot match exactly (an IPv6 network, a name, a range).
 */
#include "net/allow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#define ENTRY_MAX 64            /* "255.255.255.255/32" and some */

/* The prefix length of "/N" text, or -1. */
static int prefix_len(const char *s)
{
    int n = 0;
    size_t len = strlen(s);
    if (len == 0 || len > 2)
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        n = n * 10 + (*s - '0');
    }
    return n <= 32 ? n : -1;
}

int net_allow_add(struct net_allow *a, const char *entry, struct error *err)
{
    char buf[ENTRY_MAX];
    size_t len = strlen(entry);
    if (len == 0 || len >= sizeof(buf))
        return error_set(err, "allow-list entry \"%.64s\" is not an IPv4 "
                         "address or network (192.0.2.0/24)", entry);
    if (a->n >= NET_ALLOW_MAX)
        return error_set(err, "an allow-list holds at most %d entries",
                         NET_ALLOW_MAX);
    memcpy(buf, entry, len + 1);
    char *slash = strchr(buf, '/');
    int bits = 32;
    if (slash) {
        *slash = '\0';
        bits = prefix_len(slash + 1);
    }
    struct in_addr in;
    if (strchr(buf, ':'))
        return error_set(err, "allow-list entry \"%s\": IPv6 is not "
                         "accepted (the listeners take IPv4 connections)",
                         entry);
    if (bits < 0 || inet_pton(AF_INET, buf, &in) != 1)
        return error_set(err, "allow-list entry \"%s\" is not an IPv4 "
                         "address or network (192.0.2.0/24)", entry);
    uint32_t addr = ntohl(in.s_addr);
    uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    if (addr & ~mask) {
        struct in_addr net = { htonl(addr & mask) };
        char want[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &net, want, sizeof(want));
        return error_set(err, "allow-list entry \"%s\" has host bits set "
                         "(the network is %s/%d)", entry, want, bits);
    }
    a->net[a->n] = addr;
    a->mask[a->n] = mask;
    a->n++;
    return 0;
}

int net_allow_parse(struct net_allow *a, const char *list, struct error *err)
{
    a->n = 0;
    for (const char *p = list; p && *p;) {
        size_t skip = strspn(p, ", \t");
        p += skip;
        size_t len = strcspn(p, ", \t");
        if (len == 0)
            break;
        char entry[ENTRY_MAX];
        if (len >= ENTRY_MAX) {
            a->n = 0;
            return error_set(err, "allow-list entry \"%.32s...\" is not an "
                             "IPv4 address or network", p);
        }
        memcpy(entry, p, len);
        entry[len] = '\0';
        if (net_allow_add(a, entry, err) < 0) {
            a->n = 0;
            return -1;
        }
        p += len;
    }
    return 0;
}

int net_allow_json(struct net_allow *a, const json_t *list, struct error *err)
{
    a->n = 0;
    if (list == NULL)
        return 0;
    if (!json_is_array(list))
        return error_set(err, "allow_from must be a list of IPv4 addresses "
                         "or networks ([\"192.0.2.0/24\"])");
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL || net_allow_add(a, s, err) < 0) {
            if (s == NULL)
                error_set(err, "allow_from[%zu] must be a string", i);
            a->n = 0;
            return -1;
        }
    }
    return 0;
}

bool net_allow_has(const struct net_allow *a, uint32_t addr)
{
    if (a->n == 0)
        return true;
    for (size_t i = 0; i < a->n; i++)
        if ((addr & a->mask[i]) == a->net[i])
            return true;
    return false;
}

bool net_allow_has_text(const struct net_allow *a, const char *addr)
{
    struct in_addr in;
    if (a->n == 0)
        return true;
    return addr && inet_pton(AF_INET, addr, &in) == 1 &&
           net_allow_has(a, ntohl(in.s_addr));
}
