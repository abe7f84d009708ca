/*
 * fuzz_webhook_auth.c - libFuzzer target for a webhook request's
 * credential headers (src/connectors/webhook_auth.c): the Authorization
 * header of basic and bearer, HMAC's signature and timestamp. Besides the
 * sanitizers it checks what each promises: a signature taken is 64
 * lower-case hex digits, a timestamp taken is within the window, a basic
 * credential is no longer than its base64 allows, a bearer one is the
 * header's rest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_str.h"
#include "connectors/webhook_auth.h"

#define NOW 1700000000LL
#define SKEW 300LL

static void check_signature(const char *s)
{
    char sig[65];
    if (webhook_signature(s, sig) != 0)
        return;
    if (strlen(sig) != 64 || strspn(sig, "0123456789abcdef") != 64)
        abort();
}

static void check_credentials(const char *s, size_t n)
{
    struct secret *b = webhook_credential(s, 1);
    if (b != NULL && secret_len(b) > n / 4 * 3)
        abort();
    secret_free(b);
    struct secret *t = webhook_credential(s, 0);
    if (t != NULL && secret_len(t) > n)
        abort();
    secret_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    if (s == NULL)
        return 0;
    long long ts = 0;
    check_signature(s);
    if (webhook_timestamp(s, NOW, SKEW, &ts) == 0 &&
        (ts < NOW - SKEW || ts > NOW + SKEW))
        abort();
    check_credentials(s, size);
    free(s);
    return 0;
}
