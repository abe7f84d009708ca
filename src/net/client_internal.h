/*
 * client_internal.h - what the files of the one transport share
 * (net/client.c: HTTP(S) and the proxy rule; net/client_sftp.c: curl's
 * sftp scheme). Nothing outside src/net/ includes it.
 */
#ifndef WHARF_NET_CLIENT_INTERNAL_H
#define WHARF_NET_CLIENT_INTERNAL_H

/* libcurl initialized (once per process): 1, or 0 when it failed. */
int net_curl_ready(void);

#endif
