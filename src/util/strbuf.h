/*
 * strbuf.h - a growing, NUL-terminated text buffer for reports built
 * piece by piece (the posture report's text and HTML, the inventory's CSV,
 * the /metrics text).
 *
 * An allocation failure is sticky: later appends do nothing and
 * strbuf_take() answers NULL, so a builder checks once at the end. Not for
 * secrets (the buffer is not wiped; use struct secret).
 *
 * Ownership: the buffer owns p until strbuf_take() hands it to the caller
 * (who frees it) or strbuf_free() releases it.
 */
#ifndef WHARF_STRBUF_H
#define WHARF_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *p;            /* NULL until the first append */
    size_t len, cap;
    int failed;         /* an allocation failed: nothing more is added */
};

/* Append n bytes of s / the string s / printf-formatted text. */
void strbuf_add(struct strbuf *b, const char *s, size_t n);
void strbuf_str(struct strbuf *b, const char *s);
void strbuf_addf(struct strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The text (malloc'ed, caller frees; "" when nothing was added), or NULL
 * when an allocation failed. The buffer is empty afterwards. */
char *strbuf_take(struct strbuf *b);

/* Release the text and empty the buffer. */
void strbuf_free(struct strbuf *b);

#endif
