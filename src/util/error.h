/*
 * error.h - human-readable errors that travel beside return codes.
 *
 * Every fallible function takes a `struct error *` (which may be NULL) and
 * fills it with one clear sentence for the operator. The message is fixed
 * size so that filling it never allocates and never fails. Error text must
 * never contain a secret: callers format names, paths and ids, not values
 * of struct secret (which cannot be formatted at all, see secret.h).
 */
#ifndef WHARF_ERROR_H
#define WHARF_ERROR_H

#include <stddef.h>

#define ERROR_MSG_MAX 512

struct error {
    int code;                   /* errno-like detail, 0 when unknown */
    char msg[ERROR_MSG_MAX];    /* one sentence, no trailing newline */
};

/* Set the message (printf-style). err may be NULL. Always returns -1 so a
 * caller can write `return error_set(err, ...);`. */
int error_set(struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like error_set, appending ": strerror(errnum)". Returns -1. */
int error_errno(struct error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Put "context: " in front of the existing message. */
void error_prefix(struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append the OpenSSL error queue (and clear it). Returns -1. */
int error_openssl(struct error *err, const char *what);

void error_clear(struct error *err);

#endif
