/*
 * fuzz_url.c - libFuzzer target for the request path decoding and
 * normalization of the HTTPS listeners (src/net/url.c). Besides the
 * sanitizers it checks the router's promises: the result starts with '/',
 * never grows, and holds no "." or ".." segment.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/url.h"

static int has_dot_segment(const char *p)
{
    for (const char *s = p; (s = strchr(s, '/')) != NULL; s++) {
        const char *e = strchr(s + 1, '/');
        size_t n = e ? (size_t)(e - s - 1) : strlen(s + 1);
        if ((n == 1 && s[1] == '.') || (n == 2 && s[1] == '.' && s[2] == '.'))
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 2);
    if (s == NULL)
        return 0;
    s[0] = '/';
    memcpy(s + 1, data, size);
    s[size + 1] = '\0';
    size_t before = strlen(s);
    if (net_url_decode(s) == 0 && s[0] == '/') {
        net_path_normalize(s);
        if (s[0] != '/' || strlen(s) > before || has_dot_segment(s))
            abort();
    }
    free(s);
    return 0;
}
