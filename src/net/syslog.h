/*
 * syslog.h - sending one RFC 5424 syslog message to a configured target
 * (R19 notifications): a local datagram socket (unix:/dev/log), or a
 * collector by address over UDP (one datagram per message), TCP (RFC 6587
 * octet counting: "LEN SP MSG", a connection per message) or TLS (RFC
 * 5425: the same framing inside TLS 1.2+ with net/tls.c's client policy,
 * the collector's certificate verified against its name or address; R11).
 *
 * The message is formatted by the caller (security/notify.c); this file
 * only moves bytes. Targets name an address (IPv4, [IPv6]) or a host name
 * that the system resolver knows; nothing else is ever contacted, and
 * never through a proxy (syslog is not HTTP).
 */
#ifndef WHARF_NET_SYSLOG_H
#define WHARF_NET_SYSLOG_H

#include <stddef.h>

#include "util/error.h"

/* Check a target's form without any I/O: "unix:/PATH", "udp://HOST:PORT",
 * "tcp://HOST:PORT" or "tls://HOST:PORT". 0 or -1 with err. */
int net_syslog_check(const char *target, struct error *err);

/* Send msg[0..len) to target, within timeout_ms (connect and write);
 * over tls://, the collector's certificate must chain to ca_file (NULL:
 * the system's trust store). 0, or -1 with err naming the target and the
 * stage. */
int net_syslog_send(const char *target, const char *ca_file,
                    const char *msg, size_t len, long timeout_ms,
                    struct error *err);

/* Whether target crosses the network in plain text: udp:// or tcp:// to
 * a host other than loopback (the posture report flags it, R11). */
int net_syslog_plain(const char *target);

#endif
