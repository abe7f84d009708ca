/*
 * error.c - filling struct error. Owns nothing beyond the caller's struct.
 * Formatting is bounded by ERROR_MSG_MAX; truncation is silent by design
 * (a cut message is better than a failed error path).
 */
#include "util/error.h"
#include "util/status.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(struct error *err, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    err->code = 0;
    return -1;
}

int error_errno(struct error *err, int errnum, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    char head[ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    snprintf(err->msg, sizeof(err->msg), "%s: %s", head, strerror(errnum));
    err->code = errnum;
    return -1;
}

void error_prefix(struct error *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char head[ERROR_MSG_MAX], old[ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", head, old);
}

int error_openssl(struct error *err, const char *what)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "no detail from OpenSSL";
    if (e != 0)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    return error_set(err, "%s (%s)", what, detail);
}

void error_clear(struct error *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *wh_status_name(enum wh_status s)
{
    switch (s) {
    case WH_OK: return "ok";
    case WH_AGAIN: return "again";
    case WH_RETRY: return "retry";
    case WH_FAIL: return "fail";
    case WH_DECLINED: return "declined";
    }
    return "unknown";
}
