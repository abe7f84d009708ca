/*
 * url.c - the request-target of an HTTP request turned into the path the
 * router matches: %XX decoded (an encoded NUL or a malformed escape is an
 * error), "." and ".." segments removed (RFC 3986 5.2.4) so no route can
 * be reached by a path that climbs out of it. Untrusted input: fuzzed by
 * tests/fuzz/fuzz_url.c. Works in place; never grows the string.
 * Also the one percent-encoder of what Wharf sends (OAuth and OIDC forms
 * and URLs): net_url_encode.
 */
#include "net/url.h"

#include <string.h>

static int net_hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decode %XX in place. -1 for a malformed escape or an encoded NUL. */
int net_url_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s != '%') {
            *o++ = *s;
            continue;
        }
        int hi = net_hexval(s[1]), lo = hi < 0 ? -1 : net_hexval(s[2]);
        if (lo < 0 || (hi | lo) == 0)
            return -1;
        *o++ = (char)(hi * 16 + lo);
        s += 2;
    }
    *o = '\0';
    return 0;
}

/* Remove "." and ".." segments (RFC 3986 5.2.4) of a path that starts with
 * '/', in place; ".." never climbs above "/". */
void net_path_normalize(char *p)
{
    size_t olen = 0;
    char *in = p;
    while (*in == '/') {
        char *seg = in + 1, *end = strchr(seg, '/');
        size_t sl = end ? (size_t)(end - seg) : strlen(seg);
        if (sl == 1 && seg[0] == '.') {
            if (!end)
                p[olen++] = '/';
        } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            while (olen > 0 && p[--olen] != '/')
                ;
            if (!end)
                p[olen++] = '/';
        } else {
            p[olen++] = '/';
            memmove(p + olen, seg, sl);
            olen += sl;
        }
        in = seg + sl;
    }
    if (olen == 0)
        p[olen++] = '/';
    p[olen] = '\0';
}

int net_url_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

size_t net_url_encode(const unsigned char *in, size_t n, unsigned char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (net_url_unreserved(in[i])) {
            out[j++] = in[i];
        } else {
            out[j++] = '%';
            out[j++] = (unsigned char)hex[in[i] >> 4];
            out[j++] = (unsigned char)hex[in[i] & 15];
        }
    }
    return j;
}
