/*
 * url.h - decoding and normalizing the path of a request, and the one
 * percent-encoder of outbound URLs and forms (see url.c).
 */
#ifndef WHARF_NET_URL_H
#define WHARF_NET_URL_H

/* Decode %XX in place. -1 for a malformed escape or an encoded NUL. */
int net_url_decode(char *s);

/* Remove "." and ".." segments of a path that starts with '/', in place;
 * ".." never climbs above "/". */
void net_path_normalize(char *p);

/* Percent-encode n bytes of in at out (room for 3 * n): every byte but
 * RFC 3986's unreserved ones (A-Z a-z 0-9 - . _ ~) as %XX. Returns the
 * length written (no NUL). */
#include <stddef.h>
size_t net_url_encode(const unsigned char *in, size_t n, unsigned char *out);

/* Whether c is one of RFC 3986's unreserved characters. */
int net_url_unreserved(unsigned char c);

#endif
