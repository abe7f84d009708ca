/*
 * strbuf.c - the growing text buffer of strbuf.h. Owns nothing but the
 * buffer's own allocation; never logs.
 */
#include "util/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for need more bytes and the NUL: 0, or -1 (and failed). */
static int strbuf_room(struct strbuf *b, size_t need)
{
    if (b->failed)
        return -1;
    if (b->p != NULL && b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *q = realloc(b->p, cap);
    if (q == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p = q;
    b->cap = cap;
    return 0;
}

void strbuf_add(struct strbuf *b, const char *s, size_t n)
{
    if (strbuf_room(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_str(struct strbuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_addf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->failed = 1;
        return;
    }
    if (strbuf_room(b, (size_t)k) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
}

char *strbuf_take(struct strbuf *b)
{
    char *p = b->failed ? NULL : b->p;
    if (p == NULL && !b->failed)
        p = calloc(1, 1);
    if (b->failed)
        free(b->p);
    *b = (struct strbuf){0};
    return p;
}

void strbuf_free(struct strbuf *b)
{
    free(b->p);
    *b = (struct strbuf){0};
}
