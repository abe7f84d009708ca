/*
 * fuzz_str.h - the fuzzer's bytes as a C string, for targets whose parser
 * takes one (a header value, a configuration value): a malloc'ed copy with
 * a NUL after it (an embedded NUL ends the string early, as it would in a
 * header). NULL when out of memory; the caller frees.
 */
#ifndef WHARF_FUZZ_STR_H
#define WHARF_FUZZ_STR_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s != NULL) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

#endif
