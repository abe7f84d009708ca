/*
 * webhook_auth.c - parsing a webhook request's credential headers
 * (webhook_auth.h). Pure: no I/O, no clock (now is given).
 *
 * Owns the secret it returns until the caller takes it. Must never copy a
 * credential anywhere but that secret.
 */
#include "connectors/webhook_auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

struct secret *webhook_credential(const char *authorization, int basic)
{
    const char *scheme = basic ? "Basic " : "Bearer ";
    size_t sl = strlen(scheme);
    if (authorization == NULL || strncasecmp(authorization, scheme, sl) != 0)
        return NULL;
    const char *v = authorization + sl;
    while (*v == ' ')
        v++;
    size_t vl = strlen(v);
    if (vl > WEBHOOK_CREDENTIAL_MAX)
        return NULL;
    if (!basic)
        return secret_from(v, vl);
    if (vl % 4 != 0)
        return NULL;
    struct secret *got = secret_new(vl / 4 * 3 + 3);
    int n = got ? EVP_DecodeBlock(secret_data_mut(got),
                                  (const unsigned char *)v, (int)vl) : -1;
    size_t pad = (vl > 0 && v[vl - 1] == '=') + (vl > 1 && v[vl - 2] == '=');
    struct secret *exact = n >= (int)pad
                           ? secret_from(secret_data(got), (size_t)n - pad)
                           : NULL;
    secret_free(got);
    return exact;
}

int webhook_signature(const char *header, char out[65])
{
    const char *sig = header;
    if (sig == NULL)
        return -1;
    if (strncasecmp(sig, "sha256=", 7) == 0)
        sig += 7;
    if (strlen(sig) != 64)
        return -1;
    for (size_t i = 0; i < 64; i++) {
        char ch = sig[i];
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return -1;
        out[i] = ch;
    }
    out[64] = '\0';
    return 0;
}

int webhook_timestamp(const char *header, long long now, long long skew,
                      long long *ts)
{
    char *end;
    if (header == NULL || header[0] < '0' || header[0] > '9')
        return -1;
    errno = 0;
    long long t = strtoll(header, &end, 10);
    if (errno || *end || t < now - skew || t > now + skew)
        return -1;
    *ts = t;
    return 0;
}
