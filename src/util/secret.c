/*
 * secret.c - owns struct secret: one malloc'ed block holding the length and
 * the bytes, mlock()ed best-effort so it does not reach swap, and wiped with
 * OPENSSL_cleanse before it is freed. It also owns reading a secret from a
 * file (keystore, password files) straight into such a block.
 *
 * It must never copy secret bytes anywhere else (no stdio buffers, no
 * temporary heap copies), never put them in an error message, and never
 * compare them with anything but CRYPTO_memcmp.
 */
#include "util/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_FILE_MAX (64 * 1024)

struct secret {
    size_t len;             /* bytes in use */
    size_t cap;             /* bytes allocated after the header (len + 1) */
    bool locked;            /* mlock succeeded on bytes[0..cap) */
    unsigned char bytes[];  /* cap bytes; bytes[len] is always 0 */
};

static struct secret *secret_alloc(size_t len)
{
    if (len > SIZE_MAX - sizeof(struct secret) - 1)
        return NULL;
    struct secret *s = calloc(1, sizeof(*s) + len + 1);
    if (s == NULL)
        return NULL;
    s->len = len;
    s->cap = len + 1;
    /* Best effort: RLIMIT_MEMLOCK may be small; a failure is not an error. */
    s->locked = mlock(s->bytes, s->cap) == 0;
    return s;
}

struct secret *secret_new(size_t len)
{
    return secret_alloc(len);
}

struct secret *secret_from(const void *p, size_t len)
{
    struct secret *s = secret_alloc(len);
    if (s != NULL && len > 0)
        memcpy(s->bytes, p, len);
    return s;
}

const unsigned char *secret_data(const struct secret *s)
{
    return s != NULL ? s->bytes : NULL;
}

unsigned char *secret_data_mut(struct secret *s)
{
    return s != NULL ? s->bytes : NULL;
}

size_t secret_len(const struct secret *s)
{
    return s != NULL ? s->len : 0;
}

int secret_equal(const struct secret *a, const struct secret *b)
{
    if (a == NULL || b == NULL || a->len != b->len)
        return 0;
    return CRYPTO_memcmp(a->bytes, b->bytes, a->len) == 0;
}

void secret_free(struct secret *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s->bytes, s->cap);
    if (s->locked)
        munlock(s->bytes, s->cap);
    free(s);
}

/* Refuse anything but a regular file that only its owner can access. */
static int secret_check_file(const char *path, const struct stat *st,
                             struct error *err)
{
    if (!S_ISREG(st->st_mode))
        return error_set(err, "secret file %s is not a regular file", path);
    unsigned mode = (unsigned)(st->st_mode & 07777);
    if (mode & 044)
        return error_set(err, "secret file %s is readable by group or others "
                         "(mode %04o); run chmod 600 %s", path, mode, path);
    if (mode & 077)
        return error_set(err, "secret file %s is accessible by group or "
                         "others (mode %04o); run chmod 600 %s",
                         path, mode, path);
    if (st->st_size > SECRET_FILE_MAX)
        return error_set(err, "secret file %s is larger than %d bytes",
                         path, SECRET_FILE_MAX);
    return 0;
}

/* Read up to s->len bytes; shrink s->len to what was actually there. */
static int secret_read_fd(int fd, struct secret *s, const char *path,
                          struct error *err)
{
    size_t got = 0;
    while (got < s->len) {
        ssize_t n = read(fd, s->bytes + got, s->len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_errno(err, errno, "cannot read secret file %s", path);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    s->len = got;
    return 0;
}

/* Drop one trailing "\n" or "\r\n", wiping the dropped bytes. */
static void secret_strip_newline(struct secret *s)
{
    size_t cut = 0;
    if (s->len >= 1 && s->bytes[s->len - 1] == '\n')
        cut = (s->len >= 2 && s->bytes[s->len - 2] == '\r') ? 2 : 1;
    s->len -= cut;
    OPENSSL_cleanse(s->bytes + s->len, cut);
}

/* 1 when every byte of s is white space (or s is empty). */
static int secret_blank(const struct secret *s)
{
    for (size_t i = 0; i < s->len; i++)
        if (!strchr(" \t\r\n\v\f", s->bytes[i]) || s->bytes[i] == '\0')
            return 0;
    return 1;
}

struct secret *secret_from_file(const char *path, struct error *err)
{
    /* O_NONBLOCK: a FIFO must not hang the caller before fstat refuses it */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        error_errno(err, errno, "cannot open secret file %s", path);
        return NULL;
    }
    struct stat st;
    struct secret *s = NULL;
    if (fstat(fd, &st) != 0) {
        error_errno(err, errno, "cannot stat secret file %s", path);
    } else if (secret_check_file(path, &st, err) == 0) {
        s = secret_alloc((size_t)st.st_size);
        if (s == NULL)
            error_set(err, "out of memory reading secret file %s", path);
        else if (secret_read_fd(fd, s, path, err) != 0) {
            secret_free(s);
            s = NULL;
        } else {
            secret_strip_newline(s);
            if (secret_blank(s)) {
                error_set(err, "secret file %s is empty (or only white "
                          "space)", path);
                secret_free(s);
                s = NULL;
            }
        }
    }
    close(fd);
    return s;
}
