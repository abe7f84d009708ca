/*
 * mail.h - sending one e-mail over SMTP with TLS required (R19
 * notifications), on libcurl's SMTP client: smtps:// (TLS from the first
 * byte) or smtp:// with STARTTLS, which must succeed (CURLUSESSL_ALL: a
 * server that does not offer it is refused, nothing is sent in clear).
 *
 * Same TLS policy as net/client.c (TLS 1.2+, the suites and groups of
 * tls.h, peer and host name always verified) and the same proxy rule
 * (net_client_proxy_setopt: a CONNECT tunnel or SOCKS). The message is
 * formatted by the caller; this file only sends it.
 */
#ifndef WHARF_NET_MAIL_H
#define WHARF_NET_MAIL_H

#include <stddef.h>

#include "util/error.h"

struct secret;
struct net_proxy;

struct net_mail {
    const char *url;            /* smtps://HOST:PORT or smtp://HOST:PORT */
    const char *from;           /* envelope sender */
    const char *const *to;      /* envelope recipients, NULL-terminated */
    const struct secret *login; /* "user:password" (AUTH), or NULL */
    const char *ca_file;        /* PEM bundle; NULL: the system store */
    const struct net_proxy *proxy;  /* NULL: direct */
    const char *data;           /* the message: headers, blank line, body
                                   (CRLF line ends) */
    size_t len;
    long timeout_ms;            /* whole transfer; 0: 30 s */
};

/* Send m. 0, or -1 with err naming the stage (TLS, login, refused
 * recipient, ...) and never a credential. Thread-safe. */
int net_mail_send(const struct net_mail *m, struct error *err);

#endif
