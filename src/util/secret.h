/*
 * secret.h - the type every secret lives in (keys, passwords, tokens).
 *
 * struct secret is opaque: it cannot be handed to printf-style functions
 * (the compiler rejects a struct pointer for %s under -Wformat -Werror), and
 * the logger takes only format strings and plain values. The bytes are
 * mlock()ed where the platform allows and wiped with OPENSSL_cleanse when
 * freed. Code that needs the bytes asks for them explicitly with
 * secret_data(), which makes every use of a secret greppable.
 */
#ifndef WHARF_SECRET_H
#define WHARF_SECRET_H

#include <stddef.h>

#include "util/error.h"

struct secret;

/* A zero-filled secret of len bytes. Caller owns; free with secret_free.
 * Returns NULL only when out of memory. */
struct secret *secret_new(size_t len);

/* A copy of len bytes at p. Caller owns. */
struct secret *secret_from(const void *p, size_t len);

/* The contents of a file (at most 64 KiB), without one trailing "\n" or
 * "\r\n". Refuses files accessible by group or others. Caller owns. */
struct secret *secret_from_file(const char *path, struct error *err);

const unsigned char *secret_data(const struct secret *s);
unsigned char *secret_data_mut(struct secret *s);
size_t secret_len(const struct secret *s);

/* Constant-time comparison of two secrets; 1 when equal. */
int secret_equal(const struct secret *a, const struct secret *b);

/* Wipes and frees. NULL is fine. */
void secret_free(struct secret *s);

#endif
