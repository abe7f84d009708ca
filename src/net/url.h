/*
 * url.h - decoding and normalizing the path of a request (see url.c).
 */
#ifndef WHARF_NET_URL_H
#define WHARF_NET_URL_H

/* Decode %XX in place. -1 for a malformed escape or an encoded NUL. */
int net_url_decode(char *s);

/* Remove "." and ".." segments of a path that starts with '/', in place;
 * ".." never climbs above "/". */
void net_path_normalize(char *p);

#endif
