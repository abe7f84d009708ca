/*
 * fuzz_audit_anchor.c - libFuzzer target for the audit head anchor file
 * (audit_anchor_parse, src/audit/anchor.c): DIR/audit.head, read by every
 * `wharf audit verify` and before every anchor update, and exactly what
 * someone who tampers with a data dir would craft.
 *
 * Oracles beyond the sanitizers: an accepted file has a seq >= 1 and
 * fields of exactly their hex lengths, and is byte for byte the canonical
 * form of those fields (so no second spelling of an anchor exists). Must
 * never write anything.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_anchor.h"

static int fuzz_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct audit_anchor a;
    char canon[1024];
    if (audit_anchor_parse((const char *)data, size, &a) != 0)
        return 0;
    if (a.seq < 1 || !fuzz_hex(a.hash, 64) ||
        !fuzz_hex(a.key_id, VAULT_KEY_ID_LEN) ||
        !fuzz_hex(a.sig, 2 * VAULT_SIG_LEN))
        abort();
    int n = snprintf(canon, sizeof(canon), "wharf-audit-head v1\nseq %" PRId64
                     "\nhash %s\nkey %s\nsig %s\n", a.seq, a.hash, a.key_id,
                     a.sig);
    if (n < 0 || (size_t)n != size || memcmp(canon, data, size) != 0)
        abort();
    return 0;
}
