/*
 * fuzz_redact.c - libFuzzer target for log_redact(), the last line of
 * defence that masks credentials in every log line (R6). It rewrites a
 * buffer in place and sees untrusted text (error messages quote input).
 *
 * Oracles beyond the sanitizers (which catch any read or write past the
 * NUL): the result is never longer than the input, stays NUL-terminated in
 * place, and redacting is stable in length the second time around.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    size_t in_len = strlen(buf);
    log_redact(buf);
    size_t out_len = strlen(buf);
    if (out_len > in_len)
        abort();
    log_redact(buf);
    if (strlen(buf) > out_len)
        abort();
    free(buf);
    return 0;
}
