/*
 * fuzz_allow.c - libFuzzer target for the address allow-lists of the
 * listeners, partners and webhooks (src/net/allow.c). Besides the
 * sanitizers it checks what a parsed list promises: no more than
 * NET_ALLOW_MAX entries, no host bits outside a mask, a mask that is a
 * prefix, each network matching its own first and last address, and an
 * empty list after an error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_str.h"
#include "net/allow.h"

static void check(const struct net_allow *a)
{
    if (a->n > NET_ALLOW_MAX)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        uint32_t m = a->mask[i];
        if ((a->net[i] & ~m) != 0 || (m & (~m >> 1)) != 0)
            abort();
        if (!net_allow_has(a, a->net[i]) || !net_allow_has(a, a->net[i] | ~m))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    if (s == NULL)
        return 0;
    struct net_allow a;
    struct error err = {0};
    if (net_allow_parse(&a, s, &err) == 0)
        check(&a);
    else if (a.n != 0 || err.msg[0] == '\0')
        abort();
    net_allow_has_text(&a, s);
    free(s);
    return 0;
}
