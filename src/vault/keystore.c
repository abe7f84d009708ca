/*
 * keystore.c - the master keys and the audit signing keys of the vault
 * (R15, R18): creating, loading, rotating and retiring them, and the
 * keystore file that holds them.
 *
 * It owns struct vault (one calloc'ed block, mlock()ed when the system
 * allows, wiped with OPENSSL_cleanse and freed by vault_close) and every
 * buffer that ever holds key text (wiped before it goes out of scope). It
 * must never put key bytes (master keys or audit seeds) in an error message
 * or a log line, never hand them out of src/vault/, never write
 * the keystore anywhere but a 0600 temp file in the keystore's own directory
 * that is then renamed (or linked) into place, and never load a keystore
 * that group or others can access.
 *
 * Keystore file format (text, LF line ends, at most VAULT_MAX_KEYS master
 * keys and VAULT_MAX_AUDIT_KEYS audit keys):
 *
 *   wharf-keystore 1
 *   master <16 lowercase hex id> <64 lowercase hex key> active|retired
 *   ...
 *   audit-ed25519 <16 lowercase hex id> <64 lowercase hex seed> active|retired
 *   ...
 *
 * Exactly one master key is "active" (it wraps new payload data keys);
 * "retired" ones are kept only to unwrap payloads written before a
 * rotation. "audit-ed25519" lines hold the Ed25519 private keys (the 32-byte
 * seed of RFC 8032) that sign audit checkpoints (R18): at most one is
 * active (it signs); retired ones only verify older checkpoints. A keystore
 * without an audit line still loads (written before audit keys existed);
 * signing then fails. vault_create writes one active master key and one
 * active audit key; vault_rotate and vault_retire_old change master keys
 * only and write the audit lines back unchanged. Master lines come first,
 * then audit lines. Ids are random and unique within their kind (new ones
 * are also distinct from every id of the other kind). Writes are atomic
 * and durable: temp file (mode 0600, same directory) + fsync + rename (link
 * for vault_create, so an existing keystore is never replaced) + fsync of
 * the directory.
 *
 * Rotation protocol (R15), crash-safe. `wharf key rotate` (cli/key.c and
 * core/rotate.c) runs these steps; each is durable before the next starts:
 *   1. vault_rotate: a new master key becomes the active one; the old ones
 *      stay, "retired" (one atomic keystore write);
 *   2. every payload header is re-wrapped under the new key (payload_rewrap:
 *      one pwrite of the 92-byte header, inside the first disk sector, then
 *      fdatasync, per file);
 *   3. every sealed value kept in the database (profile keys, connector
 *      secrets and OAuth tokens, TOTP seeds, the OIDC client secret) is
 *      re-sealed (vault_reseal), in batches of one committed transaction;
 *   4. only when steps 2 and 3 found nothing they could not re-wrap,
 *      vault_retire_old drops the retired keys (one atomic keystore write).
 * So at every instant each object is wrapped by a key the keystore holds:
 * before step 1 by the old key; from 1 to 4 by the old or the new one, both
 * present; after 4 by the new one, since nothing uses the old one any more.
 * A kill -9 anywhere loses nothing. A keystore that holds retired master
 * keys is an unfinished rotation: running `wharf key rotate` again finishes
 * it (steps 2 to 4 under the current active key; no new key is added). The
 * audit signing keys are left as they are: verifying must accept every key
 * that ever signed a checkpoint, so a new signing key would not stop the
 * holder of a stolen keystore from signing with the old one.
 *
 * Locking. A process that keeps a keystore in memory while a rotation runs
 * could seal new objects under a key that step 4 then drops. So every
 * vault_open holds a shared flock on KEYSTORE.lock (created 0600 next to
 * the keystore) until vault_close, and a rotation first turns its own into
 * an exclusive one (vault_lock_exclusive, non-blocking: it fails while any
 * other wharf process, serve or a CLI command, has the keystore open); a
 * vault_open while a rotation holds it fails at once, saying so.
 */
#include "vault/vault_internal.h"
#include "vault/keyhost.h"
#include "vault/kms.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define KEYSTORE_MAGIC "wharf-keystore 1"
#define KEYSTORE_LINE_MAX 128
#define KEYSTORE_FILE_MAX (32 + (VAULT_MAX_KEYS + VAULT_MAX_AUDIT_KEYS) * \
                           KEYSTORE_LINE_MAX)
#define KEYSTORE_SEALED_MAX (2 * KEYSTORE_FILE_MAX + KMS_BLOB_MAX + 256)
#define KEYSTORE_MASTER "master "
#define KEYSTORE_AUDIT "audit-ed25519 "
/* a key line: prefix, id " " 64 hex digits " " state */
#define KEYSTORE_HEX_LEN 64

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

const struct vault_audit_key *keystore_audit_find(const struct vault *v,
                                                  const char *id)
{
    for (size_t i = 0; i < v->naudit; i++)
        if (memcmp(v->audit[i].id, id, VAULT_KEY_ID_LEN) == 0)
            return &v->audit[i];
    return NULL;
}

const struct vault_audit_key *keystore_audit_active(const struct vault *v)
{
    return v->audit_active < v->naudit ? &v->audit[v->audit_active] : NULL;
}

const char *vault_active_id(const struct vault *v)
{
    return v->keys[v->active].id;
}

size_t vault_key_count(const struct vault *v)
{
    return v->n;
}

const char *vault_key_id(const struct vault *v, size_t i)
{
    return i < v->n ? v->keys[i].id : NULL;
}

static struct vault *keystore_alloc(void)
{
    struct vault *v = calloc(1, sizeof(*v));
    if (v != NULL) {
        v->locked = mlock(v, sizeof(*v)) == 0;
        v->audit_active = SIZE_MAX;
        v->lockfd = -1;
    }
    return v;
}

void vault_close(struct vault *v)
{
    if (v == NULL)
        return;
    if (v->lockfd >= 0)
        close(v->lockfd);           /* releases the keystore lock */
    int locked = v->locked;
    OPENSSL_cleanse(v, sizeof(*v));
    if (locked)
        munlock(v, sizeof(*v));
    free(v);
}

/* A new random id, distinct from every master and audit key id of v. */
static int keystore_new_id(const struct vault *v,
                           char id[VAULT_KEY_ID_LEN + 1], struct error *err)
{
    unsigned char raw_id[VAULT_KEY_ID_LEN / 2];
    do {
        if (RAND_bytes(raw_id, sizeof(raw_id)) != 1)
            return error_openssl(err, "cannot generate a key id");
        keystore_hex(raw_id, sizeof(raw_id), id);
    } while (keystore_find(v, id) != NULL ||
             keystore_audit_find(v, id) != NULL);
    return 0;
}

/* A new random key with an id unique in v, appended at keys[n]. */
static int keystore_add_key(struct vault *v, struct error *err)
{
    if (v->n >= VAULT_MAX_KEYS)
        return error_set(err, "keystore already holds %d master keys; "
                         "re-wrap payloads and retire old keys first",
                         VAULT_MAX_KEYS);
    struct vault_key *k = &v->keys[v->n];
    if (keystore_new_id(v, k->id, err) != 0)
        return -1;
    if (RAND_bytes(k->key, sizeof(k->key)) != 1) {
        OPENSSL_cleanse(k, sizeof(*k));
        return error_openssl(err, "cannot generate a master key");
    }
    v->n++;
    return 0;
}

/* A new random Ed25519 audit key (any 32 random bytes are a valid seed),
 * appended at audit[naudit] and made the active one. */
static int keystore_add_audit_key(struct vault *v, struct error *err)
{
    if (v->naudit >= VAULT_MAX_AUDIT_KEYS)
        return error_set(err, "keystore already holds %d audit keys",
                         VAULT_MAX_AUDIT_KEYS);
    struct vault_audit_key *k = &v->audit[v->naudit];
    if (keystore_new_id(v, k->id, err) != 0)
        return -1;
    if (RAND_bytes(k->seed, sizeof(k->seed)) != 1) {
        OPENSSL_cleanse(k, sizeof(*k));
        return error_openssl(err, "cannot generate an audit signing key");
    }
    v->audit_active = v->naudit++;
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

/* One key line "<prefix><id> <hex of raw> active|retired\n" at buf + len;
 * returns the new length. */
static size_t keystore_format_line(char *buf, size_t bufsz, size_t len,
                                   const char *prefix, const char *id,
                                   const unsigned char *raw, int active)
{
    char hex[KEYSTORE_HEX_LEN + 1];
    keystore_hex(raw, KEYSTORE_HEX_LEN / 2, hex);
    len += (size_t)snprintf(buf + len, bufsz - len, "%s%s %s %s\n", prefix,
                            id, hex, active ? "active" : "retired");
    OPENSSL_cleanse(hex, sizeof(hex));
    return len;
}

/* The keystore text for master keys[0..n) with keys[active] active, then
 * every audit key of v, into buf. Returns the length. buf holds key text:
 * the caller wipes it. */
static size_t keystore_format(const struct vault *v,
                              const struct vault_key *keys, size_t n,
                              size_t active, char *buf, size_t bufsz)
{
    size_t len = (size_t)snprintf(buf, bufsz, "%s\n", KEYSTORE_MAGIC);
    for (size_t i = 0; i < n; i++)
        len = keystore_format_line(buf, bufsz, len, KEYSTORE_MASTER,
                                   keys[i].id, keys[i].key, i == active);
    for (size_t i = 0; i < v->naudit; i++)
        len = keystore_format_line(buf, bufsz, len, KEYSTORE_AUDIT,
                                   v->audit[i].id, v->audit[i].seed,
                                   i == v->audit_active);
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

/* Durably put master keys[0..n) and v's audit keys at path, sealed by
 * the KMS (kms.h) or as text. exclusive: fail if path exists (link
 * instead of rename). */
static int keystore_save_as(const char *path, const struct vault *v,
                            const struct vault_key *keys, size_t n,
                            size_t active, int exclusive, int sealed,
                            struct error *err)
{
    char buf[KEYSTORE_FILE_MAX], tmp[PATH_MAX];
    char file[KEYSTORE_SEALED_MAX];
    size_t len = keystore_format(v, keys, n, active, buf, sizeof(buf));
    size_t flen = 0;
    int rc = sealed ? kms_seal(buf, len, file, sizeof(file), &flen, err) : 0;
    if (rc == 0)
        rc = keystore_write_temp(path, sealed ? file : buf,
                                 sealed ? flen : len, tmp, sizeof(tmp), err);
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

/* The same, sealed when this process has a kms_command (wharf.conf). */
static int keystore_save(const char *path, const struct vault *v,
                         const struct vault_key *keys, size_t n,
                         size_t active, int exclusive, struct error *err)
{
    return keystore_save_as(path, v, keys, n, active, exclusive,
                            kms_command()[0] != '\0', err);
}

int vault_create(const char *path, struct error *err)
{
    struct vault *v = keystore_alloc();
    if (v == NULL)
        return error_set(err, "out of memory creating keystore %s", path);
    int rc = keystore_add_key(v, err);
    if (rc == 0)
        rc = keystore_add_audit_key(v, err);
    if (rc == 0)
        rc = keystore_save(path, v, v->keys, v->n, 0, 1, err);
    vault_close(v);
    return rc;
}

/* Key changes happen only where the keys are: never through the key
 * process (rotation refuses to run while serve has the keystore open). */
static int keystore_local_only(const struct vault *v, struct error *err)
{
    return v->remote ? error_set(err, "the master keys change only with "
                                 "`wharf key rotate`, while wharf serve is "
                                 "stopped") : 0;
}

int vault_rotate(struct vault *v, const char *path, struct error *err)
{
    if (keystore_local_only(v, err) != 0)
        return -1;
    if (keystore_add_key(v, err) != 0)
        return -1;
    if (keystore_save(path, v, v->keys, v->n, v->n - 1, 0, err) != 0) {
        v->n--;
        OPENSSL_cleanse(&v->keys[v->n], sizeof(v->keys[v->n]));
        return -1;
    }
    v->active = v->n - 1;
    return 0;
}

int vault_retire_old(struct vault *v, const char *path, struct error *err)
{
    if (keystore_local_only(v, err) != 0)
        return -1;
    if (keystore_save(path, v, &v->keys[v->active], 1, 0, 0, err) != 0)
        return -1;
    if (v->active != 0)
        memcpy(&v->keys[0], &v->keys[v->active], sizeof(v->keys[0]));
    OPENSSL_cleanse(&v->keys[1], sizeof(v->keys[0]) * (VAULT_MAX_KEYS - 1));
    v->n = 1;
    v->active = 0;
    return 0;
}

/* ---- loading ---------------------------------------------------------- */

/* The parts of a key line "<prefix><id> <64 hex> active|retired". */
struct keystore_fields {
    const char *id;             /* VAULT_KEY_ID_LEN hex digits */
    const char *hex;            /* KEYSTORE_HEX_LEN hex digits */
    int active;
};

/* Split line (len bytes, no LF) whose prefix is plen bytes long. 0, or
 * -1 when malformed. */
static int keystore_fields(const char *line, size_t len, size_t plen,
                           struct keystore_fields *f)
{
    size_t off_hex = plen + VAULT_KEY_ID_LEN + 1;
    size_t off_state = off_hex + KEYSTORE_HEX_LEN + 1;
    size_t slen = len > off_state ? len - off_state : 0;
    f->active = slen == 6 && memcmp(line + off_state, "active", 6) == 0;
    int retired = slen == 7 && memcmp(line + off_state, "retired", 7) == 0;
    if (slen == 0 || line[off_hex - 1] != ' ' || line[off_state - 1] != ' ' ||
        !keystore_is_hex(line + plen, VAULT_KEY_ID_LEN) ||
        !keystore_is_hex(line + off_hex, KEYSTORE_HEX_LEN) ||
        (!f->active && !retired))
        return -1;
    f->id = line + plen;
    f->hex = line + off_hex;
    return 0;
}

/* Parse one "master ..." line (len bytes, no LF) into keys[n]. */
static int keystore_parse_master(struct vault *v, const char *line,
                                 size_t len, const char *path, int lineno,
                                 struct error *err)
{
    struct keystore_fields f;
    if (keystore_fields(line, len, strlen(KEYSTORE_MASTER), &f) != 0)
        return error_set(err, "keystore %s line %d is malformed (expected "
                         "'master <16 lowercase hex id> <64 lowercase hex "
                         "key> active|retired')", path, lineno);
    if (v->n >= VAULT_MAX_KEYS)
        return error_set(err, "keystore %s holds more than %d keys",
                         path, VAULT_MAX_KEYS);
    if (keystore_find(v, f.id) != NULL)
        return error_set(err, "keystore %s line %d repeats key id %.16s",
                         path, lineno, f.id);
    if (f.active && v->active != SIZE_MAX)
        return error_set(err, "keystore %s line %d: more than one active "
                         "key", path, lineno);
    struct vault_key *k = &v->keys[v->n];
    memcpy(k->id, f.id, VAULT_KEY_ID_LEN);
    keystore_unhex(f.hex, VAULT_KEY_LEN, k->key);
    if (f.active)
        v->active = v->n;
    v->n++;
    return 0;
}

/* Parse one "audit-ed25519 ..." line (len bytes, no LF) into audit[n]. */
static int keystore_parse_audit(struct vault *v, const char *line,
                                size_t len, const char *path, int lineno,
                                struct error *err)
{
    struct keystore_fields f;
    if (keystore_fields(line, len, strlen(KEYSTORE_AUDIT), &f) != 0)
        return error_set(err, "keystore %s line %d is malformed (expected "
                         "'audit-ed25519 <16 lowercase hex id> <64 lowercase "
                         "hex seed> active|retired')", path, lineno);
    if (v->naudit >= VAULT_MAX_AUDIT_KEYS)
        return error_set(err, "keystore %s holds more than %d audit keys",
                         path, VAULT_MAX_AUDIT_KEYS);
    if (keystore_audit_find(v, f.id) != NULL)
        return error_set(err, "keystore %s line %d repeats audit key id "
                         "%.16s", path, lineno, f.id);
    if (f.active && v->audit_active != SIZE_MAX)
        return error_set(err, "keystore %s line %d: more than one active "
                         "audit key", path, lineno);
    struct vault_audit_key *k = &v->audit[v->naudit];
    memcpy(k->id, f.id, VAULT_KEY_ID_LEN);
    keystore_unhex(f.hex, VAULT_AUDIT_SEED_LEN, k->seed);
    if (f.active)
        v->audit_active = v->naudit;
    v->naudit++;
    return 0;
}

/* Parse one key line (len bytes, no LF), by its first word. */
static int keystore_parse_line(struct vault *v, const char *line, size_t len,
                               const char *path, int lineno,
                               struct error *err)
{
    size_t mlen = strlen(KEYSTORE_MASTER), alen = strlen(KEYSTORE_AUDIT);
    if (len >= mlen && memcmp(line, KEYSTORE_MASTER, mlen) == 0)
        return keystore_parse_master(v, line, len, path, lineno, err);
    if (len >= alen && memcmp(line, KEYSTORE_AUDIT, alen) == 0)
        return keystore_parse_audit(v, line, len, path, lineno, err);
    return error_set(err, "keystore %s line %d is malformed (expected a "
                     "'master ...' or 'audit-ed25519 ...' key line)", path,
                     lineno);
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

/* ---- the keystore lock ------------------------------------------------ */

/* Open (creating, 0600) path.lock and take a shared flock on it, without
 * waiting. The fd, or -1 with err (a rotation holds it exclusively). */
static int keystore_lock_shared(const char *path, struct error *err)
{
    char lock[PATH_MAX];
    if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock))
        return error_set(err, "keystore path %s is too long", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_errno(err, errno, "cannot open the keystore lock %s",
                           lock);
    if (flock(fd, LOCK_SH | LOCK_NB) == 0)
        return fd;
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
        return error_set(err, "keystore %s is being rotated by `wharf key "
                         "rotate` (it holds %s); run this again when the "
                         "rotation has finished", path, lock);
    return error_errno(err, e, "cannot lock %s", lock);
}

int vault_lock_exclusive(struct vault *v, struct error *err)
{
    if (keystore_local_only(v, err) != 0)
        return -1;
    if (v->lockfd < 0)
        return error_set(err, "internal: this keystore was not opened with "
                         "vault_open");
    if (flock(v->lockfd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    int e = errno;
    if (e == EWOULDBLOCK)
        return error_set(err, "another wharf process (a command still "
                         "running, or serve) has the keystore open; let it "
                         "finish, then run this again");
    return error_errno(err, e, "cannot lock the keystore");
}

/* ---- opening ---------------------------------------------------------- */

/* Read and parse the keystore at path into a new vault (no lock yet). */
static struct vault *keystore_load(const char *path, struct error *err)
{
    int fd = keystore_open_checked(path, err);
    if (fd < 0)
        return NULL;
    char file[KEYSTORE_SEALED_MAX + 2];
    char buf[KEYSTORE_FILE_MAX + 2];
    ssize_t len = keystore_read(fd, file, sizeof(file), path, err);
    close(fd);
    size_t tlen = 0;
    if (len >= 0 && kms_is_sealed(file, (size_t)len)) {
        if (kms_open(file, (size_t)len, path, buf, sizeof(buf), &tlen,
                     err) != 0)
            len = -1;
    } else if (len > (ssize_t)KEYSTORE_FILE_MAX) {
        len = error_set(err, "keystore %s is too large (over %d bytes); it "
                        "is not a Wharf keystore", path, KEYSTORE_FILE_MAX);
    } else if (len >= 0) {
        memcpy(buf, file, (size_t)len + 1);
        tlen = (size_t)len;
    }
    OPENSSL_cleanse(file, sizeof(file));
    struct vault *v = len < 0 ? NULL : keystore_alloc();
    if (len >= 0 && v == NULL)
        error_set(err, "out of memory loading keystore %s", path);
    if (v != NULL && keystore_parse(v, buf, tlen, path, err) != 0) {
        vault_close(v);
        v = NULL;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return v;
}

/* The vault of a process with a key process: no key at all, only the
 * active master key's id (asked once: rotation cannot run meanwhile). */
static struct vault *keystore_remote(struct error *err)
{
    struct vault *v = keystore_alloc();
    if (v == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    v->remote = 1;
    v->n = 1;
    if (keyclient_hello(v->keys[0].id, err) != 0) {
        vault_close(v);
        return NULL;
    }
    return v;
}

struct vault *vault_open(const char *path, struct error *err)
{
    if (keyclient_active())
        return keystore_remote(err);
    /* A missing or exposed keystore is reported before a lock file is
     * made; the keystore is then read after the lock is held, so it cannot
     * be one that a rotation finished replacing meanwhile. */
    int fd = keystore_open_checked(path, err);
    if (fd < 0)
        return NULL;
    close(fd);
    int lockfd = keystore_lock_shared(path, err);
    if (lockfd < 0)
        return NULL;
    struct vault *v = keystore_load(path, err);
    if (v == NULL) {
        close(lockfd);
        return NULL;
    }
    v->lockfd = lockfd;
    return v;
}

/* ---- whole keystores for backups (R20, vault_backup.h) ---------------- */

_Static_assert(VAULT_KEYSTORE_TEXT_MAX >= KEYSTORE_FILE_MAX,
               "keystore_text's buffer cannot hold a full keystore");

size_t keystore_text(const struct vault *v, char *buf, size_t n)
{
    if (v->remote || n < KEYSTORE_FILE_MAX)
        return 0;
    return keystore_format(v, v->keys, v->n, v->active, buf, n);
}

struct vault *keystore_from_text(const char *text, size_t len,
                                 const char *what, struct error *err)
{
    char buf[KEYSTORE_FILE_MAX + 2];
    if (len > KEYSTORE_FILE_MAX) {
        error_set(err, "keystore %s is too large", what);
        return NULL;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    struct vault *v = keystore_alloc();
    if (v == NULL)
        error_set(err, "out of memory loading keystore %s", what);
    if (v != NULL && keystore_parse(v, buf, len, what, err) != 0) {
        vault_close(v);
        v = NULL;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return v;
}

int vault_save_new(const struct vault *v, const char *path,
                   struct error *err)
{
    if (keystore_local_only(v, err) != 0)
        return -1;
    return keystore_save(path, v, v->keys, v->n, v->active, 1, err);
}

int vault_rewrite(const struct vault *v, const char *path, int sealed,
                  struct error *err)
{
    if (keystore_local_only(v, err) != 0)
        return -1;
    return keystore_save_as(path, v, v->keys, v->n, v->active, 0, sealed,
                            err);
}

int vault_keystore_sealed(const char *path)
{
    char head[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, head, sizeof(head)) : -1;
    if (fd >= 0)
        close(fd);
    return n > 0 ? kms_is_sealed(head, (size_t)n) : -1;
}
