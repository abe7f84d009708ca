/*
 * fuzz_sftp_listing.c - libFuzzer target for the parser of SFTP directory
 * listings (src/connectors/sftp.c), which a partner's server controls.
 * Besides the sanitizers: an accepted entry has a size >= 0 and a plain
 * file name (no '/', not "." or "..", no control characters).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/sftp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    long long sz;
    char tm[32], *name;
    if (sftp_parse_entry(line, &sz, tm, sizeof(tm), &name) == 0) {
        if (sz < 0 || *name == '\0' || strchr(name, '/') ||
            !strcmp(name, ".") || !strcmp(name, ".."))
            abort();
        for (const char *q = name; *q; q++)
            if ((unsigned char)*q < 0x20)
                abort();
    }
    free(line);
    return 0;
}
