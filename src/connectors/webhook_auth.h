/*
 * webhook_auth.h - what a webhook request's credential headers say (M6,
 * R12), parsed without I/O so that they can be fuzzed
 * (tests/fuzz/fuzz_webhook_auth.c): the Authorization header of basic and
 * bearer, and HMAC's signature and timestamp headers. webhook.c compares
 * what these return with the connector's secret.
 */
#ifndef WHARF_CONNECTORS_WEBHOOK_AUTH_H
#define WHARF_CONNECTORS_WEBHOOK_AUTH_H

#include "util/secret.h"

#define WEBHOOK_CREDENTIAL_MAX 4096

/* The credential of an Authorization header "Basic BASE64" (basic: 1; the
 * decoded "user:password") or "Bearer TOKEN" (0), the scheme's case
 * ignored, spaces after it skipped; NULL when absent, of another scheme,
 * over WEBHOOK_CREDENTIAL_MAX or not base64. Caller frees. */
struct secret *webhook_credential(const char *authorization, int basic);

/* The signature header: 64 hex digits, any case, after an optional
 * "sha256=" (any case), into out as lower case. 0, or -1. */
int webhook_signature(const char *header, char out[65]);

/* The timestamp header: Unix seconds (decimal, nothing else) within skew
 * of now, into *ts. 0, or -1. */
int webhook_timestamp(const char *header, long long now, long long skew,
                      long long *ts);

#endif
