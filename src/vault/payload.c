/*
 * payload.c - encrypted payload files (R15, M2): streaming writer, streaming
 * verifying reader, and in-place re-wrap of a file's data key on rotation.
 *
 * It owns each writer and reader (and their fd, path/msgid copies, data key
 * and segment buffers) from payload_create/payload_open until
 * payload_finish/payload_abort/payload_close. It must never hand out a byte
 * of a segment whose tag has not verified, never let memory grow with the
 * payload size (a writer holds one segment buffer, a reader two), never
 * rewrite segment bytes after they were written, and never let the data key
 * leave the struct that holds it (wiped with OPENSSL_cleanse on release).
 *
 * Payload file format, version 1 (all integers big endian):
 *
 *   header (PAYLOAD_HEADER_LEN = 92 bytes)
 *     0  magic "WHPAYLD1"                         8
 *     8  format version (1)                       1
 *     9  master key id, ascii lowercase hex      16
 *    25  nonce prefix, random per file            7
 *    32  wrap nonce, random per wrap             12
 *    44  data key wrapped by the master key      32
 *    76  wrap tag                                16
 *   segments, one after the other
 *     ciphertext (PAYLOAD_SEGMENT bytes, fewer only in the final one)
 *     || 16-byte GCM tag
 *
 * The wrap is AES-256-GCM under the master key, AAD = header bytes 0..32
 * (magic | version | key id | nonce prefix) || message id. Segment i is
 * AES-256-GCM under the file's random data key, nonce = prefix (7) || i
 * (uint32) || last flag (1 for the final segment, else 0), AAD = message id
 * || i (uint64) || prefix. Every segment but the final one holds exactly
 * PAYLOAD_SEGMENT plaintext bytes; the final one holds 0..PAYLOAD_SEGMENT
 * (an empty payload is one final segment of 0 bytes). A reader therefore
 * knows a segment is the final one when fewer than PAYLOAD_SEGMENT + 16 + 1
 * bytes remain. Re-wrapping rewrites the 92-byte header with one pwrite at
 * offset 0 (inside the first disk sector) and fdatasyncs.
 */
#include "vault/vault_internal.h"
#include "vault/keyhost.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/fault.h"

#define PAYLOAD_DKEY_LEN 32
#define PAYLOAD_SEALED (PAYLOAD_SEGMENT + PAYLOAD_TAG_LEN)
#define PAYLOAD_RAW (PAYLOAD_SEALED + 1)        /* one-byte lookahead */
#define PAYLOAD_MSGID_MAX 200

struct payload_aad {
    const void *p;
    size_t n;
};

struct payload_writer {
    int fd;                     /* -1 when the bytes go to io */
    struct payload_io io;       /* io.write != NULL: not a file */
    char *path;                 /* owned copy, for unlink on failure */
    char *msgid;                /* owned copy */
    unsigned char dkey[PAYLOAD_DKEY_LEN];
    unsigned char prefix[PAYLOAD_PREFIX_LEN];
    EVP_CIPHER_CTX *ctx;        /* owned */
    EVP_MD_CTX *sha;            /* owned */
    unsigned char *buf;         /* owned, PAYLOAD_SEALED bytes */
    size_t fill;                /* plaintext bytes in buf */
    uint64_t index;             /* next segment number */
    uint64_t size;
    int failed;
};

struct payload_reader {
    int fd;                     /* -1 when the bytes come from io */
    struct payload_io io;       /* io.read != NULL: not a file */
    char *msgid;                /* owned copy */
    unsigned char dkey[PAYLOAD_DKEY_LEN];
    unsigned char prefix[PAYLOAD_PREFIX_LEN];
    EVP_CIPHER_CTX *ctx;        /* owned */
    unsigned char *raw;         /* owned, PAYLOAD_RAW bytes read ahead */
    unsigned char *plain;       /* owned, PAYLOAD_SEGMENT verified bytes */
    size_t have;                /* bytes in raw */
    size_t plen, ppos;          /* verified bytes in plain, handed out */
    size_t pmax;                /* most bytes plain ever held (to wipe) */
    uint64_t index;             /* next segment number */
    int done;                   /* final segment verified */
    int failed;
    struct error first;         /* the error every later read repeats */
};

/* ---- I/O and crypto helpers ------------------------------------------ */

static int payload_write_all(int fd, const unsigned char *p, size_t n)
{
    int injected = fault_fail("payload.write");     /* test hook: fault.h */
    if (injected) {
        errno = injected;
        return -1;
    }
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read until n bytes or end of file (fd, or io when it has a reader);
 * returns the count, or -1 (errno set for a file, err filled by io). */
static ssize_t payload_read_full(int fd, const struct payload_io *io,
                                 unsigned char *p, size_t n,
                                 struct error *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = io->read != NULL ? io->read(io->ctx, p + got, n - got, err)
                                     : read(fd, p + got, n - got);
        if (r < 0 && io->read == NULL && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static void payload_be(uint64_t v, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

static int payload_msgid_ok(const char *msgid, struct error *err)
{
    size_t n = msgid == NULL ? 0 : strlen(msgid);
    if (n == 0 || n > PAYLOAD_MSGID_MAX)
        return error_set(err, "payload: message id is empty or longer than "
                         "%d bytes", PAYLOAD_MSGID_MAX);
    return 0;
}

static EVP_CIPHER_CTX *payload_ctx_new(void)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL &&
        EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, 1) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* One AES-256-GCM operation on a ctx set up by payload_ctx_new. Encrypting
 * writes the tag to tag; decrypting checks it. in and out may be equal.
 * Returns 0, or -1 (library failure or, decrypting, a tag mismatch). */
static int payload_gcm(EVP_CIPHER_CTX *ctx, int enc, const unsigned char *key,
                       const unsigned char *nonce,
                       const struct payload_aad *aad, size_t naad,
                       const unsigned char *in, size_t n, unsigned char *out,
                       unsigned char *tag)
{
    unsigned char fin[PAYLOAD_TAG_LEN];
    int len = 0;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
        return -1;
    for (size_t i = 0; i < naad; i++)
        if (EVP_CipherUpdate(ctx, NULL, &len, aad[i].p, (int)aad[i].n) != 1)
            return -1;
    if (n > 0 && EVP_CipherUpdate(ctx, out, &len, in, (int)n) != 1)
        return -1;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG,
                                    PAYLOAD_TAG_LEN, tag) != 1)
        return -1;
    if (EVP_CipherFinal_ex(ctx, fin, &len) != 1)
        return -1;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
                                   PAYLOAD_TAG_LEN, tag) != 1)
        return -1;
    return 0;
}

/* Seal or open segment index of a file (in/out may be equal). */
static int payload_segment(EVP_CIPHER_CTX *ctx, int enc,
                           const unsigned char *dkey,
                           const unsigned char *prefix, const char *msgid,
                           uint64_t index, int last, const unsigned char *in,
                           size_t n, unsigned char *out, unsigned char *tag)
{
    unsigned char nonce[PAYLOAD_NONCE_LEN], idx[8];
    memcpy(nonce, prefix, PAYLOAD_PREFIX_LEN);
    payload_be(index, nonce + PAYLOAD_PREFIX_LEN, 4);
    nonce[PAYLOAD_NONCE_LEN - 1] = (unsigned char)(last ? 1 : 0);
    payload_be(index, idx, sizeof(idx));
    struct payload_aad aad[3] = {
        { msgid, strlen(msgid) }, { idx, sizeof(idx) },
        { prefix, PAYLOAD_PREFIX_LEN },
    };
    return payload_gcm(ctx, enc, dkey, nonce, aad, 3, in, n, out, tag);
}

/* Wrap dkey under mk into hdr (key id, fresh wrap nonce, wrapped key, tag).
 * hdr's magic, version and prefix must already be set. */
static int payload_wrap(EVP_CIPHER_CTX *ctx, const struct vault_key *mk,
                        unsigned char *hdr, const unsigned char *dkey,
                        const char *msgid, struct error *err)
{
    memcpy(hdr + PAYLOAD_OFF_KEYID, mk->id, VAULT_KEY_ID_LEN);
    if (RAND_bytes(hdr + PAYLOAD_OFF_WNONCE, PAYLOAD_NONCE_LEN) != 1)
        return error_openssl(err, "cannot generate a wrap nonce");
    struct payload_aad aad[2] = {
        { hdr, PAYLOAD_OFF_WNONCE }, { msgid, strlen(msgid) },
    };
    if (payload_gcm(ctx, 1, mk->key, hdr + PAYLOAD_OFF_WNONCE, aad, 2, dkey,
                    PAYLOAD_DKEY_LEN, hdr + PAYLOAD_OFF_WKEY,
                    hdr + PAYLOAD_OFF_WTAG) != 0)
        return error_openssl(err, "cannot wrap a payload data key");
    return 0;
}

/* Check hdr and unwrap its data key into dkey with whichever loaded master
 * key it names. Errors name msgid. */
static int payload_unwrap(EVP_CIPHER_CTX *ctx, const struct vault *v,
                          unsigned char *hdr, const char *msgid,
                          const char *path, unsigned char *dkey,
                          struct error *err)
{
    char id[VAULT_KEY_ID_LEN + 1];
    if (memcmp(hdr, PAYLOAD_MAGIC, 8) != 0)
        return error_set(err, "message %s: payload %s has a bad header "
                         "(not a Wharf payload file)", msgid, path);
    if (hdr[PAYLOAD_OFF_VERSION] != PAYLOAD_VERSION)
        return error_set(err, "message %s: payload %s has unsupported format "
                         "version %u", msgid, path, hdr[PAYLOAD_OFF_VERSION]);
    if (!keystore_is_hex((const char *)hdr + PAYLOAD_OFF_KEYID,
                         VAULT_KEY_ID_LEN))
        return error_set(err, "message %s: payload %s has a corrupted header "
                         "(bad master key id)", msgid, path);
    if (v->remote)
        return keyclient_unwrap(msgid, hdr, dkey, err);
    memcpy(id, hdr + PAYLOAD_OFF_KEYID, VAULT_KEY_ID_LEN);
    id[VAULT_KEY_ID_LEN] = '\0';
    const struct vault_key *mk = keystore_find(v, id);
    if (mk == NULL)
        return error_set(err, "message %s: payload sealed with unknown master "
                         "key %s", msgid, id);
    struct payload_aad aad[2] = {
        { hdr, PAYLOAD_OFF_WNONCE }, { msgid, strlen(msgid) },
    };
    if (payload_gcm(ctx, 0, mk->key, hdr + PAYLOAD_OFF_WNONCE, aad, 2,
                    hdr + PAYLOAD_OFF_WKEY, PAYLOAD_DKEY_LEN, dkey,
                    hdr + PAYLOAD_OFF_WTAG) != 0) {
        OPENSSL_cleanse(dkey, PAYLOAD_DKEY_LEN);
        ERR_clear_error();
        return error_set(err, "message %s: payload data key does not unwrap "
                         "(wrong master key, payload of another message, or "
                         "corrupted header)", msgid);
    }
    return 0;
}

int vault_payload_unwrap(struct vault *v, unsigned char *hdr,
                         const char *msgid, unsigned char *dkey,
                         struct error *err)
{
    if (payload_msgid_ok(msgid, err) != 0)
        return -1;
    EVP_CIPHER_CTX *ctx = payload_ctx_new();
    int rc = ctx == NULL ? error_set(err, "out of memory")
           : payload_unwrap(ctx, v, hdr, msgid, "(header)", dkey, err);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int vault_payload_wrap(struct vault *v, unsigned char *hdr,
                       const unsigned char *dkey, const char *msgid,
                       struct error *err)
{
    if (payload_msgid_ok(msgid, err) != 0)
        return -1;
    if (memcmp(hdr, PAYLOAD_MAGIC, 8) != 0 ||
        hdr[PAYLOAD_OFF_VERSION] != PAYLOAD_VERSION)
        return error_set(err, "message %s: refused to wrap a data key into "
                         "a header that is not a Wharf payload header",
                         msgid);
    if (v->remote)
        return keyclient_wrap(msgid, hdr, dkey, err);
    EVP_CIPHER_CTX *ctx = payload_ctx_new();
    int rc = ctx == NULL ? error_set(err, "out of memory")
           : payload_wrap(ctx, keystore_active(v), hdr, dkey, msgid, err);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

/* Read the header of fd (at offset 0) into hdr. */
static int payload_read_header(int fd, unsigned char *hdr, const char *msgid,
                               const char *path, struct error *err)
{
    size_t got = 0;
    while (got < PAYLOAD_HEADER_LEN) {
        ssize_t r = pread(fd, hdr + got, PAYLOAD_HEADER_LEN - got,
                          (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return error_errno(err, errno, "message %s: cannot read payload "
                               "%s", msgid, path);
        if (r == 0)
            return error_set(err, "message %s: payload %s is truncated inside "
                             "its header (%zu of %d bytes)", msgid, path, got,
                             PAYLOAD_HEADER_LEN);
        got += (size_t)r;
    }
    return 0;
}

/* ---- writer ----------------------------------------------------------- */

/* Append n bytes to w's file or io. */
static int payload_out(struct payload_writer *w, const unsigned char *p,
                       size_t n, struct error *err)
{
    if (w->io.write != NULL)
        return w->io.write(w->io.ctx, p, n, err);
    if (payload_write_all(w->fd, p, n) != 0)
        return error_errno(err, errno, "message %s: cannot write payload %s",
                           w->msgid, w->path);
    return 0;
}

/* Frees w and everything it owns; unlinks the file when unlink_file. */
static void payload_writer_free(struct payload_writer *w, int unlink_file)
{
    if (w->fd >= 0)
        close(w->fd);
    if (unlink_file && w->path != NULL)
        unlink(w->path);
    if (w->io.release != NULL)
        w->io.release(w->io.ctx, unlink_file);
    OPENSSL_cleanse(w->dkey, sizeof(w->dkey));
    if (w->buf != NULL)     /* sealed segments are encrypted in place: only */
        OPENSSL_cleanse(w->buf, w->fill);   /* unsealed plaintext remains */
    free(w->buf);
    EVP_CIPHER_CTX_free(w->ctx);
    EVP_MD_CTX_free(w->sha);
    free(w->path);
    free(w->msgid);
    free(w);
}

void payload_abort(struct payload_writer *w)
{
    if (w != NULL)
        payload_writer_free(w, 1);
}

/* Allocate the writer's parts, keys and digest state (no file yet). */
static int payload_writer_init(struct payload_writer *w, const char *msgid,
                               struct error *err)
{
    w->msgid = strdup(msgid);
    w->buf = malloc(PAYLOAD_SEALED);
    w->ctx = payload_ctx_new();
    w->sha = EVP_MD_CTX_new();
    if (w->msgid == NULL || w->buf == NULL || w->ctx == NULL ||
        w->sha == NULL)
        return error_set(err, "message %s: out of memory creating payload",
                         msgid);
    if (EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1 ||
        RAND_bytes(w->dkey, sizeof(w->dkey)) != 1 ||
        RAND_bytes(w->prefix, sizeof(w->prefix)) != 1)
        return error_openssl(err, "cannot set up payload encryption");
    return 0;
}

/* A new header for w: its prefix, its data key wrapped. */
static int payload_new_header(struct payload_writer *w, struct vault *v,
                              unsigned char hdr[PAYLOAD_HEADER_LEN],
                              struct error *err)
{
    memcpy(hdr, PAYLOAD_MAGIC, 8);
    hdr[PAYLOAD_OFF_VERSION] = PAYLOAD_VERSION;
    memcpy(hdr + PAYLOAD_OFF_PREFIX, w->prefix, PAYLOAD_PREFIX_LEN);
    return vault_payload_wrap(v, hdr, w->dkey, w->msgid, err);
}

/* Create the file and write its header. */
static int payload_writer_start(struct payload_writer *w, struct vault *v,
                                const char *path, struct error *err)
{
    unsigned char hdr[PAYLOAD_HEADER_LEN];
    if (payload_new_header(w, v, hdr, err) != 0)
        return -1;
    w->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (w->fd < 0)
        return error_errno(err, errno, "message %s: cannot create payload "
                           "%s", w->msgid, path);
    w->path = strdup(path);   /* set only once the file is ours */
    if (w->path == NULL) {
        unlink(path);
        return error_set(err, "message %s: out of memory", w->msgid);
    }
    return payload_out(w, hdr, sizeof(hdr), err);
}

struct payload_writer *payload_create(struct vault *v, const char *path,
                                      const char *msgid, struct error *err)
{
    if (payload_msgid_ok(msgid, err) != 0)
        return NULL;
    struct payload_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        error_set(err, "message %s: out of memory creating payload", msgid);
        return NULL;
    }
    w->fd = -1;
    if (payload_writer_init(w, msgid, err) != 0 ||
        payload_writer_start(w, v, path, err) != 0) {
        payload_abort(w);
        return NULL;
    }
    return w;
}

struct payload_writer *payload_create_io(struct vault *v,
                                         const struct payload_io *io,
                                         const char *msgid, struct error *err)
{
    unsigned char hdr[PAYLOAD_HEADER_LEN];
    struct payload_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        io->release(io->ctx, 1);
        error_set(err, "message %s: out of memory creating payload", msgid);
        return NULL;
    }
    w->fd = -1;
    w->io = *io;            /* w owns io from here: released with w */
    if (payload_msgid_ok(msgid, err) != 0 ||
        payload_writer_init(w, msgid, err) != 0 ||
        payload_new_header(w, v, hdr, err) != 0 ||
        payload_out(w, hdr, sizeof(hdr), err) != 0) {
        payload_abort(w);
        return NULL;
    }
    return w;
}

/* Encrypt the buffered segment in place and append it to the file. */
static int payload_seal(struct payload_writer *w, int last, struct error *err)
{
    if (w->index > UINT32_MAX)
        return error_set(err, "message %s: payload is too large (more than "
                         "2^32 segments)", w->msgid);
    if (payload_segment(w->ctx, 1, w->dkey, w->prefix, w->msgid, w->index,
                        last, w->buf, w->fill, w->buf,
                        w->buf + w->fill) != 0)
        return error_openssl(err, "payload segment encryption failed");
    if (payload_out(w, w->buf, w->fill + PAYLOAD_TAG_LEN, err) != 0)
        return -1;
    w->index++;
    w->fill = 0;
    return 0;
}

int payload_write(struct payload_writer *w, const void *buf, size_t n,
                  struct error *err)
{
    const unsigned char *p = buf;
    if (w->failed)
        return error_set(err, "message %s: payload writer already failed",
                         w->msgid);
    if (n > 0 && EVP_DigestUpdate(w->sha, p, n) != 1) {
        w->failed = 1;
        return error_openssl(err, "payload digest failed");
    }
    while (n > 0) {
        if (w->fill == PAYLOAD_SEGMENT && payload_seal(w, 0, err) != 0) {
            w->failed = 1;
            return -1;
        }
        size_t take = PAYLOAD_SEGMENT - w->fill;
        take = take < n ? take : n;
        memcpy(w->buf + w->fill, p, take);
        w->fill += take;
        w->size += take;
        p += take;
        n -= take;
    }
    return 0;
}

/* fsync the file and its directory, then close it. */
static int payload_sync_close(struct payload_writer *w, struct error *err)
{
    if (fsync(w->fd) != 0)
        return error_errno(err, errno, "message %s: cannot fsync payload %s",
                           w->msgid, w->path);
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0)
        return error_errno(err, errno, "message %s: cannot close payload %s",
                           w->msgid, w->path);
    if (vault_fsync_parent(w->path, err) != 0) {
        error_prefix(err, "message %s: payload %s", w->msgid, w->path);
        return -1;
    }
    return 0;
}

int payload_finish(struct payload_writer *w, struct payload_info *info,
                   int *fd_out, struct error *err)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (w->failed) {
        error_set(err, "message %s: payload writer already failed", w->msgid);
        goto fail;
    }
    if (payload_seal(w, 1, err) != 0)
        goto fail;
    if (EVP_DigestFinal_ex(w->sha, md, &mdlen) != 1 || mdlen != sizeof(md)) {
        error_openssl(err, "payload digest failed");
        goto fail;
    }
    if (w->io.commit != NULL ? w->io.commit(w->io.ctx, err) != 0
        : fd_out == NULL && payload_sync_close(w, err) != 0)
        goto fail;
    if (info != NULL) {
        info->size = w->size;
        keystore_hex(md, sizeof(md), info->sha256);
    }
    if (fd_out != NULL) {
        *fd_out = w->fd;   /* ownership of the fd moves to the caller */
        w->fd = -1;        /* (-1: io committed it) */
    }
    payload_writer_free(w, 0);
    return 0;
fail:
    payload_abort(w);
    return -1;
}

/* ---- reader ----------------------------------------------------------- */

void payload_close(struct payload_reader *r)
{
    if (r == NULL)
        return;
    if (r->fd >= 0)
        close(r->fd);
    if (r->io.release != NULL)
        r->io.release(r->io.ctx, 0);
    OPENSSL_cleanse(r->dkey, sizeof(r->dkey));
    if (r->plain != NULL)
        OPENSSL_cleanse(r->plain, r->pmax);   /* failures wipe it all themselves */
    free(r->plain);
    free(r->raw);
    EVP_CIPHER_CTX_free(r->ctx);
    free(r->msgid);
    free(r);
}

/* Open path, read and unwrap its header into r. */
static int payload_reader_start(struct payload_reader *r, struct vault *v,
                                const char *path, struct error *err)
{
    unsigned char hdr[PAYLOAD_HEADER_LEN];
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return error_errno(err, errno, "message %s: cannot open payload %s",
                           r->msgid, path);
    (void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (payload_read_header(r->fd, hdr, r->msgid, path, err) != 0 ||
        payload_unwrap(r->ctx, v, hdr, r->msgid, path, r->dkey, err) != 0) {
        vault_integrity_check(err, "payload", r->msgid);
        return -1;
    }
    memcpy(r->prefix, hdr + PAYLOAD_OFF_PREFIX, PAYLOAD_PREFIX_LEN);
    if (lseek(r->fd, PAYLOAD_HEADER_LEN, SEEK_SET) < 0)
        return error_errno(err, errno, "message %s: cannot seek in payload %s",
                           r->msgid, path);
    return 0;
}

/* A reader with its buffers and no source yet (io, when given, is owned
 * by it from here, whatever happens); NULL with err. */
static struct payload_reader *payload_reader_new(const char *msgid,
                                                 const struct payload_io *io,
                                                 struct error *err)
{
    struct payload_reader *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        if (io != NULL)
            io->release(io->ctx, 0);
        error_set(err, "message %s: out of memory opening payload", msgid);
        return NULL;
    }
    r->fd = -1;
    if (io != NULL)
        r->io = *io;
    r->msgid = strdup(msgid);
    r->raw = malloc(PAYLOAD_RAW);
    r->plain = malloc(PAYLOAD_SEGMENT);
    r->ctx = payload_ctx_new();
    if (r->msgid == NULL || r->raw == NULL || r->plain == NULL ||
        r->ctx == NULL) {
        error_set(err, "message %s: out of memory opening payload", msgid);
        payload_close(r);
        return NULL;
    }
    return r;
}

struct payload_reader *payload_open(struct vault *v, const char *path,
                                    const char *msgid, struct error *err)
{
    struct error local = {0};
    if (err == NULL)
        err = &local;           /* to tell an I/O error from tampering */
    if (payload_msgid_ok(msgid, err) != 0)
        return NULL;
    struct payload_reader *r = payload_reader_new(msgid, NULL, err);
    if (r != NULL && payload_reader_start(r, v, path, err) != 0) {
        payload_close(r);
        return NULL;
    }
    return r;
}

/* Read and unwrap the header io gives first. */
static int payload_reader_start_io(struct payload_reader *r, struct vault *v,
                                   struct error *err)
{
    unsigned char hdr[PAYLOAD_HEADER_LEN];
    ssize_t got = payload_read_full(-1, &r->io, hdr, sizeof(hdr), err);
    if (got < 0)
        return -1;
    if (got < PAYLOAD_HEADER_LEN) {
        error_set(err, "message %s: payload is truncated inside its header "
                  "(%zd of %d bytes)", r->msgid, got, PAYLOAD_HEADER_LEN);
    } else if (payload_unwrap(r->ctx, v, hdr, r->msgid, "(stored)", r->dkey,
                              err) == 0) {
        memcpy(r->prefix, hdr + PAYLOAD_OFF_PREFIX, PAYLOAD_PREFIX_LEN);
        return 0;
    }
    vault_integrity_check(err, "payload", r->msgid);
    return -1;
}

struct payload_reader *payload_open_io(struct vault *v,
                                       const struct payload_io *io,
                                       const char *msgid, struct error *err)
{
    struct error local = {0};
    if (err == NULL)
        err = &local;
    if (payload_msgid_ok(msgid, err) != 0) {
        io->release(io->ctx, 0);
        return NULL;
    }
    struct payload_reader *r = payload_reader_new(msgid, io, err);
    if (r != NULL && payload_reader_start_io(r, v, err) != 0) {
        payload_close(r);
        return NULL;
    }
    return r;
}

/* Try to open the segment in raw (clen ciphertext bytes, tag after them)
 * with the given last flag, into plain. */
static int payload_try_open(struct payload_reader *r, size_t clen, int last)
{
    return payload_segment(r->ctx, 0, r->dkey, r->prefix, r->msgid, r->index,
                           last, r->raw, clen, r->plain, r->raw + clen);
}

/* The segment in raw did not verify as it stood: say why, as precisely as
 * the bytes allow (the other last flag verifying means truncation or data
 * appended at a segment boundary). */
static int payload_explain(struct payload_reader *r, size_t clen, int last)
{
    struct error *e = &r->first;
    if (last && clen == PAYLOAD_SEGMENT && payload_try_open(r, clen, 0) == 0)
        error_set(e, "message %s: payload truncated (no final segment after "
                  "segment %llu)", r->msgid, (unsigned long long)r->index);
    else if (!last && payload_try_open(r, clen, 1) == 0)
        error_set(e, "message %s: payload has data after its final segment "
                  "(segment %llu)", r->msgid, (unsigned long long)r->index);
    else
        error_set(e, "message %s: payload segment %llu failed authentication "
                  "(corrupted%s or tampered)", r->msgid,
                  (unsigned long long)r->index, last ? ", truncated" : "");
    OPENSSL_cleanse(r->plain, PAYLOAD_SEGMENT);
    ERR_clear_error();
    return -1;
}

/* Read, verify and decrypt the next segment into plain. Errors go to
 * r->first. */
static int payload_next_segment(struct payload_reader *r)
{
    ssize_t got = payload_read_full(r->fd, &r->io, r->raw + r->have,
                                    PAYLOAD_RAW - r->have, &r->first);
    if (got < 0 && r->io.read != NULL) {
        if (r->first.code == 0)     /* the io said why: its failure (a */
            r->first.code = EIO;    /* database gone), not tampering */
        return -1;
    }
    if (got < 0)
        return error_errno(&r->first, errno, "message %s: cannot read "
                           "payload segment %llu", r->msgid,
                           (unsigned long long)r->index);
    r->have += (size_t)got;
    int last = r->have < PAYLOAD_RAW;
    if (last && r->have < PAYLOAD_TAG_LEN)
        return error_set(&r->first, "message %s: payload truncated (no final "
                         "segment; segment %llu is cut short)", r->msgid,
                         (unsigned long long)r->index);
    if (r->index > UINT32_MAX)
        return error_set(&r->first, "message %s: payload has more than 2^32 "
                         "segments", r->msgid);
    size_t clen = last ? r->have - PAYLOAD_TAG_LEN : PAYLOAD_SEGMENT;
    if (payload_try_open(r, clen, last) != 0)
        return payload_explain(r, clen, last);
    r->plen = clen;
    if (clen > r->pmax)
        r->pmax = clen;
    r->ppos = 0;
    r->index++;
    r->done = last;
    if (!last)
        r->raw[0] = r->raw[PAYLOAD_SEALED];   /* the lookahead byte */
    r->have = last ? 0 : 1;
    return 0;
}

ssize_t payload_read(struct payload_reader *r, void *buf, size_t n,
                     struct error *err)
{
    while (!r->failed && r->ppos == r->plen && !r->done)
        if (payload_next_segment(r) != 0) {
            r->failed = 1;
            vault_integrity_check(&r->first, "payload", r->msgid);
        }
    if (r->failed) {
        if (err != NULL)
            *err = r->first;
        return -1;
    }
    size_t take = r->plen - r->ppos;
    take = take < n ? take : n;
    if (take > 0)
        memcpy(buf, r->plain + r->ppos, take);
    r->ppos += take;
    return (ssize_t)take;
}

/* ---- rotation --------------------------------------------------------- */

/* Re-wrap hdr (read from where, for messages) in place unless it already
 * uses the active key: 1 rewrapped, 0 current, -1. */
static int payload_rewrap_hdr(struct vault *v, unsigned char *hdr,
                              const char *msgid, const char *where,
                              struct error *err)
{
    if (payload_msgid_ok(msgid, err) != 0)
        return -1;
    if (v->remote)
        return error_set(err, "message %s: payloads are re-wrapped only by "
                         "`wharf key rotate`, while wharf serve is stopped",
                         msgid);
    unsigned char dkey[PAYLOAD_DKEY_LEN];
    EVP_CIPHER_CTX *ctx = payload_ctx_new();
    if (ctx == NULL)
        return error_set(err, "message %s: out of memory", msgid);
    const struct vault_key *mk = keystore_active(v);
    int rc = payload_unwrap(ctx, v, hdr, msgid, where, dkey, err);
    if (rc == 0 && memcmp(hdr + PAYLOAD_OFF_KEYID, mk->id,
                          VAULT_KEY_ID_LEN) != 0)
        rc = payload_wrap(ctx, mk, hdr, dkey, msgid, err) == 0 ? 1 : -1;
    OPENSSL_cleanse(dkey, sizeof(dkey));
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int payload_header_rewrap(struct vault *v, unsigned char *hdr, size_t n,
                          const char *msgid, struct error *err)
{
    if (n != PAYLOAD_HEADER_LEN)
        return error_set(err, "message %s: the payload header is %zu bytes, "
                         "not %d", msgid ? msgid : "-", n,
                         PAYLOAD_HEADER_LEN);
    return payload_rewrap_hdr(v, hdr, msgid, "(stored)", err);
}

/* The header of fd re-wrapped and, when it changed, written back durably. */
static int payload_rewrap_fd(struct vault *v, int fd, const char *path,
                             const char *msgid, struct error *err)
{
    unsigned char hdr[PAYLOAD_HEADER_LEN];
    if (payload_read_header(fd, hdr, msgid, path, err) != 0)
        return -1;
    int rc = payload_rewrap_hdr(v, hdr, msgid, path, err);
    if (rc != 1)
        return rc;
    ssize_t w;
    do
        w = pwrite(fd, hdr, sizeof(hdr), 0);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)sizeof(hdr))
        return error_errno(err, w < 0 ? errno : EIO, "message %s: cannot "
                           "rewrite the header of payload %s", msgid, path);
    if (fdatasync(fd) != 0)
        return error_errno(err, errno, "message %s: cannot sync payload %s",
                           msgid, path);
    return 1;
}

int payload_rewrap(struct vault *v, const char *path, const char *msgid,
                   struct error *err)
{
    if (payload_msgid_ok(msgid, err) != 0)
        return -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "message %s: cannot open payload %s",
                           msgid, path);
    int rc = payload_rewrap_fd(v, fd, path, msgid, err);
    close(fd);
    return rc;
}

/* ---- destroy ------------------------------------------------------------- */

int payload_destroy(const char *path, struct error *err)
{
    unsigned char zero[PAYLOAD_HEADER_LEN] = {0};
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0
               : error_errno(err, errno, "cannot open payload %s", path);
    int rc = (pwrite(fd, zero, sizeof(zero), 0) == (ssize_t)sizeof(zero) &&
              fdatasync(fd) == 0) ? 0 : -1;
    int e = errno;
    close(fd);
    if (rc < 0)
        return error_errno(err, e, "cannot shred payload %s", path);
    if (unlink(path) < 0)
        return error_errno(err, errno, "cannot remove payload %s", path);
    return vault_fsync_parent(path, err);
}

int payload_header_check(struct vault *v, const unsigned char *hdr, size_t n,
                         const char *msgid, struct error *err)
{
    unsigned char copy[PAYLOAD_HEADER_LEN], dkey[PAYLOAD_DKEY_LEN];
    if (n < PAYLOAD_HEADER_LEN)
        return error_set(err, "message %s: the payload is shorter than its "
                         "header (%zu of %d bytes)", msgid, n,
                         PAYLOAD_HEADER_LEN);
    memcpy(copy, hdr, PAYLOAD_HEADER_LEN);
    int rc = vault_payload_unwrap(v, copy, msgid, dkey, err);
    OPENSSL_cleanse(dkey, sizeof(dkey));
    return rc;
}
