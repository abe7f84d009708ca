/*
 * fuzz_oauth_token.c - libFuzzer target for the parser of OAuth 2.0 token
 * responses (src/net/oauth.c), which a token endpoint controls. The first
 * byte picks the HTTP status (200, 400, 401 or another), the rest is the
 * body. Besides the sanitizers: an accepted token holds 1..OAUTH_TOKEN_MAX
 * visible ASCII characters (it goes into an Authorization header), so does
 * a refresh token; a refusal's error code and description are printable
 * and NUL-terminated; a failure leaves nothing allocated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/oauth.h"
#include "util/secret.h"

static void check_token(const struct secret *s)
{
    size_t n = secret_len(s);
    if (n == 0 || n > OAUTH_TOKEN_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if (secret_data(s)[i] < 0x21 || secret_data(s)[i] > 0x7e)
            abort();
}

static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = { 200, 400, 401, 500 };
    if (size == 0)
        return 0;
    long status = statuses[data[0] % 4];
    struct oauth_token t;
    struct error err = {0};
    int rc = oauth_token_parse(status, (const char *)data + 1, size - 1, &t,
                               &err);
    if (rc == 0) {
        if (status != 200 || t.access == NULL || t.expires_in < 0)
            abort();
        check_token(t.access);
        if (t.refresh)
            check_token(t.refresh);
        if (t.scope)
            check_text(t.scope, 1025);
    } else if (rc == 1) {
        if (status == 200 || t.access || t.error[0] == '\0')
            abort();
        check_text(t.error, sizeof(t.error));
        check_text(t.description, sizeof(t.description));
    } else if (rc != -1 || t.access || t.refresh || t.scope ||
               err.msg[0] == '\0') {
        abort();
    }
    oauth_token_clear(&t);
    return 0;
}
