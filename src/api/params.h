/*
 * params.h - query-string and cookie parsing for the REST API (params.c).
 */
#ifndef WHARF_API_PARAMS_H
#define WHARF_API_PARAMS_H

#include <stddef.h>

/* URL-decode [s, s+n) into out (NUL-terminated, '+' is a space); -1 if it
 * does not fit, holds a malformed escape or an encoded NUL. */
int api_url_decode(const char *s, size_t n, char *out, size_t outsz);

/* The value of cookie `name` in a Cookie header into out (at most n bytes
 * with the NUL); 0 found, -1 absent or too long. */
int api_cookie_get(const char *header, const char *name, char *out, size_t n);

#endif
