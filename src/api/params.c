/*
 * params.c - the small parsers of request parameters the REST API reads
 * itself: query-string values (URL-decoded, '+' as space) and cookies.
 * Untrusted input, bounded by the caller's buffers, fuzzed by
 * tests/fuzz/fuzz_params.c. Never allocates.
 */
#include "api/params.h"

#include <string.h>

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int api_url_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            ch = h * 16 + l;
            i += 2;
        }
        if (ch == 0 || k + 1 >= outsz)
            return -1;
        out[k++] = (char)ch;
    }
    out[k] = '\0';
    return 0;
}

int api_cookie_get(const char *header, const char *name, char *out,
                   size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = header; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = len - nl - 1;
            if (vl + 1 > n)
                return -1;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        p = end;
    }
    return -1;
}

