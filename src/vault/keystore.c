/*
 * keystore.c - the master keys of the vault (R15): creating, loading,
 * rotating and retiring them, and the keystore file that holds them.
 *
 * It owns struct vault (one calloc'ed block, mlock()ed when the system
 * allows, wiped with OPENSSL_cleanse and freed by vault_close) and every
 * buffer that ever holds key text (wiped before it goes out of scope). It
 * must never put key bytes in an error message or a log line, never write
 * the keystore anywhere but a 0600 temp file in the keystore's own directory
 * that is then renamed (or linked) into place, and never load a keystore
 * that group or others can access.
 *
 * Keystore file format (text, LF line ends, at most VAULT_MAX_KEYS keys):
 *
 *   wharf-keystore 1
 *   master <16 lowercase hex id> <64 lowercase hex key> active|retired
 *   ...
 *
 * Exactly one key is "active" (it wraps new payload data keys); "retired"
 * keys are kept only to unwrap payloads written before a rotation. Ids are
 * random and unique within the file. Writes are atomic and durable: temp
 * file (mode 0600, same directory) + fsync + rename (link for vault_create,
 * so an existing keystore is never replaced) + fsync of the directory.
 */
#include "vault/vault_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define KEYSTORE_MAGIC "wharf-keystore 1"
#define KEYSTORE_LINE_MAX 128
#define KEYSTORE_FILE_MAX (32 + VAULT_MAX_KEYS * KEYSTORE_LINE_MAX)
/* "master " id " " key " " state */
#define KEYSTORE_OFF_ID 7
#define KEYSTORE_OFF_KEY (KEYSTORE_OFF_ID + VAULT_KEY_ID_LEN + 1)
#define KEYSTORE_OFF_STATE (KEYSTORE_OFF_KEY + 2 * VAULT_KEY_LEN + 1)

/* ---- small helpers ---------------------------------------------------- */

void keystore_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int keystore_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int keystore_is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (keystore_hexval(s[i]) < 0)
            return 0;
    return 1;
}

/* Decode 2n hex digits (already checked) into out. */
static void keystore_unhex(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(keystore_hexval(s[2 * i]) << 4 |
                                 keystore_hexval(s[2 * i + 1]));
}

const struct vault_key *keystore_find(const struct vault *v, const char *id)
{
    for (size_t i = 0; i < v->n; i++)
        if (memcmp(v->keys[i].id, id, VAULT_KEY_ID_LEN) == 0)
            return &v->keys[i];
    return NULL;
}

const struct vault_key *keystore_active(const struct vault *v)
{
    return &v->keys[v->active];
}

const char *vault_active_id(const struct vault *v)
{
    return v->keys[v->active].id;
}

static struct vault *keystore_alloc(void)
{
    struct vault *v = calloc(1, sizeof(*v));
    if (v != NULL)
        v->locked = mlock(v, sizeof(*v)) == 0;
    return v;
}

void vault_close(struct vault *v)
{
    if (v == NULL)
        return;
    int locked = v->locked;
    OPENSSL_cleanse(v, sizeof(*v));
    if (locked)
        munlock(v, sizeof(*v));
    free(v);
}

/* A new random key with an id unique in v, appended at keys[n]. */
static int keystore_add_key(struct vault *v, struct error *err)
{
    if (v->n >= VAULT_MAX_KEYS)
        return error_set(err, "keystore already holds %d master keys; "
                         "re-wrap payloads and retire old keys first",
                         VAULT_MAX_KEYS);
    struct vault_key *k = &v->keys[v->n];
    unsigned char raw_id[VAULT_KEY_ID_LEN / 2];
    do {
        if (RAND_bytes(raw_id, sizeof(raw_id)) != 1 ||
            RAND_bytes(k->key, sizeof(k->key)) != 1)
            return error_openssl(err, "cannot generate a master key");
        keystore_hex(raw_id, sizeof(raw_id), k->id);
    } while (keystore_find(v, k->id) != NULL);
    v->n++;
    return 0;
}

/* ---- durable writing ------------------------------------------------- */

static int keystore_write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

int vault_fsync_parent(const char *path, struct error *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 0 : (size_t)(slash - path);
    if (slash == NULL)
        memcpy(dir, ".", 2);
    else if (len == 0)
        memcpy(dir, "/", 2);
    else if (len < sizeof(dir)) {
        memcpy(dir, path, len);
        dir[len] = '\0';
    } else
        return error_set(err, "path %s is too long", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot open directory %s", dir);
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return error_errno(err, e, "cannot fsync directory %s", dir);
    return 0;
}

/* The keystore text for keys[0..n) with keys[active] active, into buf.
 * Returns the length. buf holds key text: the caller wipes it. */
static size_t keystore_format(const struct vault_key *keys, size_t n,
                              size_t active, char *buf, size_t bufsz)
{
    size_t len = (size_t)snprintf(buf, bufsz, "%s\n", KEYSTORE_MAGIC);
    for (size_t i = 0; i < n; i++) {
        char hex[2 * VAULT_KEY_LEN + 1];
        keystore_hex(keys[i].key, VAULT_KEY_LEN, hex);
        len += (size_t)snprintf(buf + len, bufsz - len, "master %s %s %s\n",
                                keys[i].id, hex,
                                i == active ? "active" : "retired");
        OPENSSL_cleanse(hex, sizeof(hex));
    }
    return len;
}

/* Write buf to a new 0600 temp file next to path and fsync it; the temp
 * name goes to tmp. Returns 0 or -1 (temp removed). */
static int keystore_write_temp(const char *path, const char *buf, size_t len,
                               char *tmp, size_t tmpsz, struct error *err)
{
    if ((size_t)snprintf(tmp, tmpsz, "%s.tmp-XXXXXX", path) >= tmpsz)
        return error_set(err, "keystore path %s is too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot create temp file for "
                           "keystore %s", path);
    int rc = fchmod(fd, 0600) == 0 && keystore_write_all(fd, buf, len) == 0 &&
             fsync(fd) == 0 ? 0 : -1;
    int e = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        return error_errno(err, e, "cannot write keystore temp file %s", tmp);
    }
    return 0;
}

/* Durably put keys[0..n) at path. exclusive: fail if path exists
 * (link instead of rename). */
static int keystore_save(const char *path, const struct vault_key *keys,
                         size_t n, size_t active, int exclusive,
                         struct error *err)
{
    char buf[KEYSTORE_FILE_MAX], tmp[PATH_MAX];
    size_t len = keystore_format(keys, n, active, buf, sizeof(buf));
    int rc = keystore_write_temp(path, buf, len, tmp, sizeof(tmp), err);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc != 0)
        return -1;
    rc = exclusive ? link(tmp, path) : rename(tmp, path);
    int e = errno;
    if (exclusive || rc != 0)
        unlink(tmp);
    if (rc != 0 && e == EEXIST)
        return error_set(err, "keystore %s already exists; refusing to "
                         "overwrite it", path);
    if (rc != 0)
        return error_errno(err, e, "cannot put keystore in place at %s",
                           path);
    return vault_fsync_parent(path, err);
}

int vault_create(const char *path, struct error *err)
{
    struct vault *v = keystore_alloc();
    if (v == NULL)
        return error_set(err, "out of memory creating keystore %s", path);
    int rc = keystore_add_key(v, err);
    if (rc == 0)
        rc = keystore_save(path, v->keys, v->n, 0, 1, err);
    vault_close(v);
    return rc;
}

int vault_rotate(struct vault *v, const char *path, struct error *err)
{
    if (keystore_add_key(v, err) != 0)
        return -1;
    if (keystore_save(path, v->keys, v->n, v->n - 1, 0, err) != 0) {
        v->n--;
        OPENSSL_cleanse(&v->keys[v->n], sizeof(v->keys[v->n]));
        return -1;
    }
    v->active = v->n - 1;
    return 0;
}

int vault_retire_old(struct vault *v, const char *path, struct error *err)
{
    if (keystore_save(path, &v->keys[v->active], 1, 0, 0, err) != 0)
        return -1;
    if (v->active != 0)
        memcpy(&v->keys[0], &v->keys[v->active], sizeof(v->keys[0]));
    OPENSSL_cleanse(&v->keys[1], sizeof(v->keys[0]) * (VAULT_MAX_KEYS - 1));
    v->n = 1;
    v->active = 0;
    return 0;
}

/* ---- loading ---------------------------------------------------------- */

/* Parse one "master ..." line (len bytes, no LF) into keys[n]. */
static int keystore_parse_line(struct vault *v, const char *line, size_t len,
                               const char *path, int lineno,
                               struct error *err)
{
    size_t slen = len > KEYSTORE_OFF_STATE ? len - KEYSTORE_OFF_STATE : 0;
    int active = slen == 6 &&
                 memcmp(line + KEYSTORE_OFF_STATE, "active", 6) == 0;
    int retired = slen == 7 &&
                  memcmp(line + KEYSTORE_OFF_STATE, "retired", 7) == 0;
    if (slen == 0 || memcmp(line, "master ", 7) != 0 ||
        line[KEYSTORE_OFF_KEY - 1] != ' ' ||
        line[KEYSTORE_OFF_STATE - 1] != ' ' ||
        !keystore_is_hex(line + KEYSTORE_OFF_ID, VAULT_KEY_ID_LEN) ||
        !keystore_is_hex(line + KEYSTORE_OFF_KEY, 2 * VAULT_KEY_LEN) ||
        (!active && !retired))
        return error_set(err, "keystore %s line %d is malformed (expected "
                         "'master <16 lowercase hex id> <64 lowercase hex "
                         "key> active|retired')", path, lineno);
    if (v->n >= VAULT_MAX_KEYS)
        return error_set(err, "keystore %s holds more than %d keys",
                         path, VAULT_MAX_KEYS);
    if (keystore_find(v, line + KEYSTORE_OFF_ID) != NULL)
        return error_set(err, "keystore %s line %d repeats key id %.16s",
                         path, lineno, line + KEYSTORE_OFF_ID);
    if (active && v->active != SIZE_MAX)
        return error_set(err, "keystore %s line %d: more than one active "
                         "key", path, lineno);
    struct vault_key *k = &v->keys[v->n];
    memcpy(k->id, line + KEYSTORE_OFF_ID, VAULT_KEY_ID_LEN);
    keystore_unhex(line + KEYSTORE_OFF_KEY, VAULT_KEY_LEN, k->key);
    if (active)
        v->active = v->n;
    v->n++;
    return 0;
}

/* Parse the whole file text (NUL-terminated, len bytes) into v.
 * v->active is SIZE_MAX until the active key's line is seen. */
static int keystore_parse(struct vault *v, const char *text, size_t len,
                          const char *path, struct error *err)
{
    size_t pos = 0;
    v->active = SIZE_MAX;
    if (len == 0)
        return error_set(err, "keystore %s is empty", path);
    for (int lineno = 1; pos < len; lineno++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t llen = nl == NULL ? len - pos : (size_t)(nl - (text + pos));
        if (lineno == 1) {
            if (llen != strlen(KEYSTORE_MAGIC) ||
                memcmp(text, KEYSTORE_MAGIC, llen) != 0)
                return error_set(err, "keystore %s is malformed: first line "
                                 "must be '%s'", path, KEYSTORE_MAGIC);
        } else if (keystore_parse_line(v, text + pos, llen, path, lineno,
                                       err) != 0)
            return -1;
        pos += llen + 1;
    }
    if (v->active == SIZE_MAX)
        return error_set(err, "keystore %s is malformed: it has no active "
                         "master key", path);
    return 0;
}

/* Open path and check it is a regular file only its owner can access. */
static int keystore_open_checked(const char *path, struct error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot open keystore %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return error_errno(err, e, "cannot stat keystore %s", path);
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        close(fd);
        if (!S_ISREG(st.st_mode))
            return error_set(err, "keystore %s is not a regular file", path);
        return error_set(err, "keystore %s is accessible by group or others "
                         "(mode %04o); run: chmod 600 %s", path,
                         (unsigned)(st.st_mode & 07777), path);
    }
    return fd;
}

/* Read the whole keystore into buf (NUL-terminated); returns length or -1. */
static ssize_t keystore_read(int fd, char *buf, size_t bufsz,
                             const char *path, struct error *err)
{
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, bufsz - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return error_errno(err, errno, "cannot read keystore %s", path);
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == bufsz - 1)
            return error_set(err, "keystore %s is too large (over %zu "
                             "bytes); it is not a Wharf keystore", path,
                             bufsz - 2);
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

struct vault *vault_open(const char *path, struct error *err)
{
    int fd = keystore_open_checked(path, err);
    if (fd < 0)
        return NULL;
    char buf[KEYSTORE_FILE_MAX + 2];
    ssize_t len = keystore_read(fd, buf, sizeof(buf), path, err);
    close(fd);
    struct vault *v = len < 0 ? NULL : keystore_alloc();
    if (len >= 0 && v == NULL)
        error_set(err, "out of memory loading keystore %s", path);
    if (v != NULL && keystore_parse(v, buf, (size_t)len, path, err) != 0) {
        vault_close(v);
        v = NULL;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return v;
}
