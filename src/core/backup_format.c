/*
 * backup_format.c - the backup container (R20): header, encrypted segment
 * stream, entries and the signed trailer; writer and verifying reader.
 *
 * It owns each writer and reader (their buffers, digest and cipher
 * contexts and the copy of the content key, wiped on free). It must never
 * hand out a byte of a segment whose tag has not verified, never report an
 * entry complete before its SHA-256 matched, never let memory grow with
 * the size of an entry or of the backup, and never do I/O beyond the fd or
 * read function it was given. It knows nothing of vaults, databases or
 * data directories.
 *
 * File format, version 1 (integers big endian):
 *
 *   header
 *     0  magic "WHBACKUP"                        8
 *     8  format version (1)                      1
 *     9  nonce prefix, random per file           7
 *    16  header JSON length n (<= 64 KiB)        4
 *    20  header JSON (backup_info_json)          n
 *        key block length k (<= 256 KiB)         4
 *        key block                               k
 *   segments, one after the other
 *     ciphertext (BACKUP_SEGMENT bytes, fewer only in the final one)
 *     || 16-byte GCM tag
 *
 * H = SHA-256 of the whole header (magic to the end of the key block).
 * Segment i is AES-256-GCM under the content key, nonce = prefix (7) || i
 * (uint32) || last flag (1 for the final segment), AAD = H || i (uint64).
 * Every segment but the final one holds exactly BACKUP_SEGMENT plaintext
 * bytes, so a reader knows the final one by its size (one byte read
 * ahead) and the last flag makes a cut at a segment boundary fail. A
 * changed header byte changes H: the first segment then fails.
 *
 * The plaintext of the segments is a sequence of records:
 *   entry    kind ('F' file, 'M' missing) 1 | name length 2 | name |
 *            size 8 | size bytes of data | SHA-256 of the data 32
 *            ('M' has size 0)
 *   trailer  'E' 1 | entries 8 | data bytes 8 | manifest hash 32 |
 *            audit key id (16 hex) 16 | Ed25519 signature 64
 * and the stream ends right after the trailer. The manifest hash is
 * SHA-256 over "wharf-backup-manifest v1\n" || H || for each entry: kind
 * || name length || name || size || its SHA-256. The signature (by the
 * source's audit key, checked by the caller through the vault) covers
 * backup_signed_text: "wharf-backup v1\n" || hex(manifest) || "\n".
 */
#include "core/backup_format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define BK_TAG 16
#define BK_NONCE 12
#define BK_SEALED (BACKUP_SEGMENT + BK_TAG)
#define BK_RAW (BK_SEALED + 1)              /* one byte read ahead */
#define BK_FIXED 20                         /* header bytes before the JSON */
#define BK_MAX_SEGMENTS 0xffffffffULL
#define BK_MANIFEST_DOMAIN "wharf-backup-manifest v1\n"
#define BK_SIGNED_DOMAIN "wharf-backup v1\n"
#define BK_TRAILER_LEN (1 + 8 + 8 + 32 + BACKUP_KEY_ID_LEN + BACKUP_SIG_LEN)

/* ---- small helpers ---------------------------------------------------- */

static void bk_be(uint64_t v, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

static uint64_t bk_get_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static void bk_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int bk_is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

size_t backup_signed_text(const unsigned char m[32], char *out, size_t n)
{
    char hex[65];
    bk_hex(m, 32, hex);
    int k = snprintf(out, n, BK_SIGNED_DOMAIN "%s\n", hex);
    return k > 0 && (size_t)k < n ? (size_t)k : 0;
}

int backup_name_ok(const char *name)
{
    size_t n = strlen(name), comp = 0, depth = 1;
    if (n == 0 || n > BACKUP_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
        return 0;
    for (size_t i = 0; i <= n; i++) {
        char c = name[i];
        if (c == '/' || c == '\0') {
            const char *start = name + i - comp;
            if (comp == 0 || (comp == 1 && start[0] == '.') ||
                (comp == 2 && start[0] == '.' && start[1] == '.'))
                return 0;
            if (c == '/' && ++depth > 8)
                return 0;
            comp = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
        comp++;
    }
    return 1;
}

/* One AES-256-GCM segment: encrypt (tag written) or decrypt (tag checked)
 * in place. 0, or -1. */
static int bk_gcm(EVP_CIPHER_CTX *ctx, int enc, const unsigned char *key,
                  const unsigned char *prefix, const unsigned char *hhash,
                  uint64_t index, int last, unsigned char *buf, size_t n,
                  unsigned char *tag)
{
    unsigned char nonce[BK_NONCE], idx[8], fin[BK_TAG];
    int len = 0;
    memcpy(nonce, prefix, BACKUP_PREFIX_LEN);
    bk_be(index, nonce + BACKUP_PREFIX_LEN, 4);
    nonce[BK_NONCE - 1] = (unsigned char)(last ? 1 : 0);
    bk_be(index, idx, sizeof(idx));
    if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &len, hhash, 32) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &len, idx, sizeof(idx)) != 1)
        return -1;
    if (n > 0 && EVP_CipherUpdate(ctx, buf, &len, buf, (int)n) != 1)
        return -1;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, BK_TAG,
                                    tag) != 1)
        return -1;
    if (EVP_CipherFinal_ex(ctx, fin, &len) != 1)
        return -1;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, BK_TAG,
                                   tag) != 1)
        return -1;
    return 0;
}

static EVP_CIPHER_CTX *bk_ctx_new(int enc)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL,
                                         NULL, enc) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static EVP_MD_CTX *bk_sha_new(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return NULL;
    }
    return md;
}

/* The manifest's record of one entry. */
static int bk_manifest_add(EVP_MD_CTX *m, enum backup_entry_kind kind,
                           const char *name, uint64_t size,
                           const unsigned char sha[32])
{
    unsigned char head[3], sz[8], k = (unsigned char)kind;
    size_t n = strlen(name);
    head[0] = k;
    bk_be(n, head + 1, 2);
    bk_be(size, sz, 8);
    return EVP_DigestUpdate(m, head, 3) == 1 &&
           EVP_DigestUpdate(m, name, n) == 1 &&
           EVP_DigestUpdate(m, sz, 8) == 1 &&
           EVP_DigestUpdate(m, sha, 32) == 1 ? 0 : -1;
}

/* The hash so far of a digest context, without ending it. */
static int bk_sha_peek(const EVP_MD_CTX *md, unsigned char out[32])
{
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = copy != NULL && EVP_MD_CTX_copy_ex(copy, md) == 1 &&
             EVP_DigestFinal_ex(copy, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(copy);
    return ok ? 0 : -1;
}

/* ---- the header JSON ---------------------------------------------------- */

char *backup_info_json(const struct backup_info *i, struct error *err)
{
    char created[32];
    time_iso(i->created_ms, created, sizeof(created));
    json_t *rcpt = i->recipient == BACKUP_TO_MASTER_KEY
        ? json_pack("{s:s, s:s}", "kind", "master-key", "key_id",
                    i->master_key_id)
        : json_pack("{s:s, s:s, s:s, s:s}", "kind", "public-key",
                    "spki_sha256", i->spki_sha256, "subject", i->subject,
                    "cms", "AuthEnvelopedData, AES-256-GCM");
    json_t *holds = json_pack("[s, s, s, s]", "database", "payloads",
                              "config", "audit-anchor");
    if (holds != NULL && i->has_keystore)
        json_array_append_new(holds, json_string("keystore"));
    json_t *o = rcpt == NULL || holds == NULL ? NULL : json_pack(
        "{s:s, s:i, s:s, s:s, s:I, s:s, s:s, s:s, s:i, s:I, s:I, s:o, s:o,"
        " s:b}",
        "format", "wharf-backup", "version", BACKUP_VERSION,
        "backup_id", i->backup_id, "created", created,
        "created_ms", (json_int_t)i->created_ms, "node", i->node,
        "wharf", i->wharf_version, "store", i->store,
        "schema_version", i->schema_version,
        "messages", (json_int_t)i->messages,
        "payloads", (json_int_t)i->payloads, "recipient", rcpt,
        "holds", holds, "keystore", i->has_keystore);
    if (o == NULL) {
        json_decref(rcpt);
        json_decref(holds);
        error_set(err, "cannot build the backup header (out of memory or "
                  "a field is not UTF-8)");
        return NULL;
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (text == NULL)
        error_set(err, "cannot encode the backup header");
    return text;
}

/* Copy string member key of o into out[n]; required unless optional. */
static int bk_json_str(json_t *o, const char *key, char *out, size_t n,
                       int optional, struct error *err)
{
    json_t *v = json_object_get(o, key);
    out[0] = '\0';
    if (v == NULL && optional)
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= n ||
        strlen(json_string_value(v)) != json_string_length(v))
        return error_set(err, "backup header: \"%s\" must be a string of "
                         "at most %zu bytes", key, n - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int bk_json_int(json_t *o, const char *key, int64_t min,
                       int64_t *out, struct error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return error_set(err, "backup header: \"%s\" must be an integer of "
                         "at least %lld", key, (long long)min);
    *out = json_integer_value(v);
    return 0;
}

static int bk_parse_recipient(json_t *r, struct backup_info *i,
                              struct error *err)
{
    char kind[16];
    if (!json_is_object(r))
        return error_set(err, "backup header: \"recipient\" must be an "
                         "object");
    if (bk_json_str(r, "kind", kind, sizeof(kind), 0, err) != 0)
        return -1;
    if (strcmp(kind, "master-key") == 0) {
        i->recipient = BACKUP_TO_MASTER_KEY;
        if (bk_json_str(r, "key_id", i->master_key_id,
                        sizeof(i->master_key_id), 0, err) != 0)
            return -1;
        if (!bk_is_hex(i->master_key_id, 16))
            return error_set(err, "backup header: the master key id is not "
                             "16 hex digits");
        return 0;
    }
    if (strcmp(kind, "public-key") != 0)
        return error_set(err, "backup header: unknown recipient kind \"%s\" "
                         "(a newer wharf wrote it?)", kind);
    i->recipient = BACKUP_TO_PUBLIC_KEY;
    if (bk_json_str(r, "spki_sha256", i->spki_sha256, sizeof(i->spki_sha256),
                    0, err) != 0 ||
        bk_json_str(r, "subject", i->subject, sizeof(i->subject), 1,
                    err) != 0)
        return -1;
    if (!bk_is_hex(i->spki_sha256, 64))
        return error_set(err, "backup header: the recipient's key hash is "
                         "not 64 hex digits");
    return 0;
}

static int bk_parse_fields(json_t *o, struct backup_info *i,
                           struct error *err)
{
    char format[32];
    int64_t version, schema;
    if (bk_json_str(o, "format", format, sizeof(format), 0, err) != 0)
        return -1;
    if (strcmp(format, "wharf-backup") != 0)
        return error_set(err, "backup header: format is \"%s\", not "
                         "\"wharf-backup\"", format);
    if (bk_json_int(o, "version", 1, &version, err) != 0)
        return -1;
    if (version != BACKUP_VERSION)
        return error_set(err, "backup header: version %lld is not supported "
                         "by this wharf (it reads version %d)",
                         (long long)version, BACKUP_VERSION);
    if (bk_json_str(o, "backup_id", i->backup_id, sizeof(i->backup_id), 0,
                    err) != 0 ||
        bk_json_int(o, "created_ms", 0, &i->created_ms, err) != 0 ||
        bk_json_str(o, "node", i->node, sizeof(i->node), 0, err) != 0 ||
        bk_json_str(o, "wharf", i->wharf_version, sizeof(i->wharf_version),
                    0, err) != 0 ||
        bk_json_str(o, "store", i->store, sizeof(i->store), 0, err) != 0 ||
        bk_json_int(o, "schema_version", 1, &schema, err) != 0 ||
        bk_json_int(o, "messages", 0, &i->messages, err) != 0 ||
        bk_json_int(o, "payloads", 0, &i->payloads, err) != 0)
        return -1;
    if (!id_valid(i->backup_id))
        return error_set(err, "backup header: backup_id is not a UUID");
    if (schema > 1000000)
        return error_set(err, "backup header: schema_version is too large");
    i->schema_version = (int)schema;
    json_t *ks = json_object_get(o, "keystore");
    if (!json_is_boolean(ks))
        return error_set(err, "backup header: \"keystore\" must be true or "
                         "false");
    i->has_keystore = json_is_true(ks);
    return bk_parse_recipient(json_object_get(o, "recipient"), i, err);
}

int backup_info_parse(const char *text, size_t n, struct backup_info *i,
                      struct error *err)
{
    json_error_t je;
    memset(i, 0, sizeof(*i));
    json_t *o = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return error_set(err, "backup header: not a JSON object (line %d, "
                         "column %d)", je.line, je.column);
    }
    int rc = bk_parse_fields(o, i, err);
    json_decref(o);
    return rc;
}

/* ---- writer ------------------------------------------------------------- */

struct backup_writer {
    int fd;
    unsigned char key[BACKUP_KEY_LEN];
    unsigned char prefix[BACKUP_PREFIX_LEN];
    unsigned char hhash[32];
    EVP_CIPHER_CTX *ctx;
    EVP_MD_CTX *file_sha, *entry_sha, *manifest;
    unsigned char *buf;         /* BK_SEALED: a segment and its tag */
    size_t fill;
    uint64_t index;             /* next segment number */
    uint64_t written;           /* file bytes */
    int in_entry;
    enum backup_entry_kind kind;
    char name[BACKUP_NAME_MAX + 1];
    uint64_t size, done;
    uint64_t entries, total;
    int finished, failed;
    char sha_hex[65];
};

static int bk_write_all(struct backup_writer *w, const unsigned char *p,
                        size_t n, struct error *err)
{
    if (EVP_DigestUpdate(w->file_sha, p, n) != 1)
        return error_openssl(err, "backup: cannot hash the file");
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return error_errno(err, errno, "backup: cannot write");
        p += k;
        n -= (size_t)k;
        w->written += (uint64_t)k;
    }
    return 0;
}

/* Seal the buffered plaintext as segment index and write it. */
static int bk_seal(struct backup_writer *w, int last, struct error *err)
{
    if (w->index > BK_MAX_SEGMENTS)
        return error_set(err, "backup: too large (over 2^32 segments)");
    if (bk_gcm(w->ctx, 1, w->key, w->prefix, w->hhash, w->index, last,
               w->buf, w->fill, w->buf + w->fill) != 0)
        return error_openssl(err, "backup: cannot encrypt a segment");
    if (bk_write_all(w, w->buf, w->fill + BK_TAG, err) != 0)
        return -1;
    w->index++;
    w->fill = 0;
    return 0;
}

/* Plaintext into the segment stream; a full segment is sealed only when
 * more bytes follow, so that the final one can be flagged at finish. */
static int bk_put(struct backup_writer *w, const void *p, size_t n,
                  struct error *err)
{
    const unsigned char *c = p;
    while (n > 0) {
        if (w->fill == BACKUP_SEGMENT && bk_seal(w, 0, err) != 0)
            return -1;
        size_t k = BACKUP_SEGMENT - w->fill < n ? BACKUP_SEGMENT - w->fill
                                                : n;
        memcpy(w->buf + w->fill, c, k);
        w->fill += k;
        c += k;
        n -= k;
    }
    return 0;
}

static int bk_write_header(struct backup_writer *w, const char *json,
                           const unsigned char *kb, size_t klen,
                           struct error *err)
{
    size_t jlen = strlen(json);
    unsigned char fixed[BK_FIXED], kl[4];
    if (jlen > BACKUP_JSON_MAX || klen == 0 || klen > BACKUP_KEYBLOCK_MAX)
        return error_set(err, "backup: header or key block too large");
    memcpy(fixed, BACKUP_MAGIC, 8);
    fixed[8] = BACKUP_VERSION;
    memcpy(fixed + 9, w->prefix, BACKUP_PREFIX_LEN);
    bk_be(jlen, fixed + 16, 4);
    bk_be(klen, kl, 4);
    EVP_MD_CTX *h = bk_sha_new();
    unsigned int n = 0;
    int ok = h != NULL && EVP_DigestUpdate(h, fixed, sizeof(fixed)) == 1 &&
             EVP_DigestUpdate(h, json, jlen) == 1 &&
             EVP_DigestUpdate(h, kl, 4) == 1 &&
             EVP_DigestUpdate(h, kb, klen) == 1 &&
             EVP_DigestFinal_ex(h, w->hhash, &n) == 1;
    EVP_MD_CTX_free(h);
    if (!ok)
        return error_openssl(err, "backup: cannot hash the header");
    if (bk_write_all(w, fixed, sizeof(fixed), err) != 0 ||
        bk_write_all(w, (const unsigned char *)json, jlen, err) != 0 ||
        bk_write_all(w, kl, 4, err) != 0 ||
        bk_write_all(w, kb, klen, err) != 0)
        return -1;
    if (EVP_DigestUpdate(w->manifest, BK_MANIFEST_DOMAIN,
                         strlen(BK_MANIFEST_DOMAIN)) != 1 ||
        EVP_DigestUpdate(w->manifest, w->hhash, 32) != 1)
        return error_openssl(err, "backup: cannot hash the manifest");
    return 0;
}

struct backup_writer *backup_writer_open(int fd, const struct backup_info *i,
                                         const unsigned char *keyblock,
                                         size_t klen,
                                         const unsigned char *key,
                                         struct error *err)
{
    struct backup_writer *w = calloc(1, sizeof(*w));
    char *json = NULL;
    if (w == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    w->fd = fd;
    memcpy(w->key, key, BACKUP_KEY_LEN);
    w->ctx = bk_ctx_new(1);
    w->file_sha = bk_sha_new();
    w->entry_sha = bk_sha_new();
    w->manifest = bk_sha_new();
    w->buf = malloc(BK_SEALED);
    int rc = w->ctx && w->file_sha && w->entry_sha && w->manifest && w->buf
             ? 0 : error_set(err, "out of memory");
    if (rc == 0 && RAND_bytes(w->prefix, sizeof(w->prefix)) != 1)
        rc = error_openssl(err, "backup: cannot make a nonce prefix");
    if (rc == 0 && (json = backup_info_json(i, err)) == NULL)
        rc = -1;
    if (rc == 0)
        rc = bk_write_header(w, json, keyblock, klen, err);
    free(json);
    if (rc != 0) {
        backup_writer_free(w);
        return NULL;
    }
    return w;
}

int backup_writer_begin(struct backup_writer *w, enum backup_entry_kind kind,
                        const char *name, uint64_t size, struct error *err)
{
    if (w->failed || w->finished || w->in_entry)
        return error_set(err, "backup: internal: entry begun out of order");
    if ((kind != BACKUP_ENTRY_FILE && kind != BACKUP_ENTRY_MISSING) ||
        (kind == BACKUP_ENTRY_MISSING && size != 0) || !backup_name_ok(name))
        return error_set(err, "backup: cannot store \"%s\": not a safe "
                         "relative name", name);
    unsigned char head[3], sz[8];
    size_t n = strlen(name);
    head[0] = (unsigned char)kind;
    bk_be(n, head + 1, 2);
    bk_be(size, sz, 8);
    if (EVP_DigestInit_ex(w->entry_sha, EVP_sha256(), NULL) != 1)
        return error_openssl(err, "backup: cannot hash an entry");
    if (bk_put(w, head, 3, err) != 0 || bk_put(w, name, n, err) != 0 ||
        bk_put(w, sz, 8, err) != 0) {
        w->failed = 1;
        return -1;
    }
    w->in_entry = 1;
    w->kind = kind;
    memcpy(w->name, name, n + 1);
    w->size = size;
    w->done = 0;
    return 0;
}

int backup_writer_data(struct backup_writer *w, const void *p, size_t n,
                       struct error *err)
{
    if (!w->in_entry || w->failed)
        return error_set(err, "backup: internal: data outside an entry");
    if (n > w->size - w->done)
        return error_set(err, "backup: %s grew while it was copied (more "
                         "than its %llu bytes)", w->name,
                         (unsigned long long)w->size);
    if (EVP_DigestUpdate(w->entry_sha, p, n) != 1 || bk_put(w, p, n, err)) {
        w->failed = 1;
        return error_set(err, "backup: cannot write %s", w->name);
    }
    w->done += n;
    return 0;
}

int backup_writer_end(struct backup_writer *w, struct error *err)
{
    unsigned char sha[32];
    unsigned int n = 0;
    if (!w->in_entry || w->failed)
        return error_set(err, "backup: internal: no entry to end");
    if (w->done != w->size)
        return error_set(err, "backup: %s has %llu bytes, not the %llu it "
                         "had when the copy began", w->name,
                         (unsigned long long)w->done,
                         (unsigned long long)w->size);
    if (EVP_DigestFinal_ex(w->entry_sha, sha, &n) != 1 ||
        bk_manifest_add(w->manifest, w->kind, w->name, w->size, sha) != 0)
        return error_openssl(err, "backup: cannot hash an entry");
    if (bk_put(w, sha, 32, err) != 0) {
        w->failed = 1;
        return -1;
    }
    w->in_entry = 0;
    w->entries++;
    w->total += w->size;
    return 0;
}

void backup_writer_manifest(const struct backup_writer *w,
                            unsigned char m[32])
{
    if (bk_sha_peek(w->manifest, m) != 0)
        memset(m, 0, 32);
}

int backup_writer_finish(struct backup_writer *w, const char *key_id,
                         const unsigned char sig[BACKUP_SIG_LEN],
                         struct error *err)
{
    unsigned char t[BK_TRAILER_LEN], digest[32];
    unsigned int n = 0;
    if (w->failed || w->in_entry || w->finished ||
        !bk_is_hex(key_id, BACKUP_KEY_ID_LEN))
        return error_set(err, "backup: internal: cannot finish here");
    backup_writer_manifest(w, t + 17);
    t[0] = 'E';
    bk_be(w->entries, t + 1, 8);
    bk_be(w->total, t + 9, 8);
    memcpy(t + 49, key_id, BACKUP_KEY_ID_LEN);
    memcpy(t + 49 + BACKUP_KEY_ID_LEN, sig, BACKUP_SIG_LEN);
    if (bk_put(w, t, sizeof(t), err) != 0 || bk_seal(w, 1, err) != 0) {
        w->failed = 1;
        return -1;
    }
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    int ok = copy != NULL && EVP_MD_CTX_copy_ex(copy, w->file_sha) == 1 &&
             EVP_DigestFinal_ex(copy, digest, &n) == 1;
    EVP_MD_CTX_free(copy);
    if (!ok)
        return error_openssl(err, "backup: cannot hash the file");
    bk_hex(digest, 32, w->sha_hex);
    w->finished = 1;
    return 0;
}

int backup_writer_raw(struct backup_writer *w, const void *p, size_t n,
                      int last, struct error *err)
{
    if (w->failed || w->finished || bk_put(w, p, n, err) != 0)
        return -1;
    if (last && bk_seal(w, 1, err) != 0)
        return -1;
    w->finished = last;
    return 0;
}

uint64_t backup_writer_bytes(const struct backup_writer *w)
{
    return w->written;
}

void backup_writer_sha256(const struct backup_writer *w, char hex[65])
{
    memcpy(hex, w->sha_hex, sizeof(w->sha_hex));
}

void backup_writer_free(struct backup_writer *w)
{
    if (w == NULL)
        return;
    OPENSSL_cleanse(w->key, sizeof(w->key));
    if (w->buf != NULL)
        OPENSSL_cleanse(w->buf, BK_SEALED);
    free(w->buf);
    EVP_CIPHER_CTX_free(w->ctx);
    EVP_MD_CTX_free(w->file_sha);
    EVP_MD_CTX_free(w->entry_sha);
    EVP_MD_CTX_free(w->manifest);
    free(w);
}

/* ---- reader ------------------------------------------------------------- */

struct backup_reader {
    backup_read_fn src;
    void *src_ctx;
    struct backup_info info;
    unsigned char *keyblock;
    size_t klen;
    unsigned char prefix[BACKUP_PREFIX_LEN], hhash[32];
    unsigned char key[BACKUP_KEY_LEN];
    int have_key;
    EVP_CIPHER_CTX *ctx;
    EVP_MD_CTX *entry_sha, *manifest;
    unsigned char *raw;         /* BK_RAW bytes read ahead */
    size_t have;
    size_t plen, ppos;          /* verified plaintext in raw[0..plen) */
    uint64_t index;             /* next segment number */
    int final_seen;             /* the final segment verified */
    uint64_t offset;            /* file bytes read */
    int in_entry;
    struct backup_entry cur;
    uint64_t left;
    uint64_t entries, total;
    struct backup_trailer trailer;
    int done, failed;
    struct error first;
};

ssize_t backup_read_fd(void *ctx, void *p, size_t n, struct error *err)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return error_errno(err, errno, "cannot read the backup");
        return k;
    }
}

/* Read until n bytes or the end; the count or -1. */
static ssize_t bk_read_full(struct backup_reader *r, unsigned char *p,
                            size_t n, struct error *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = r->src(r->src_ctx, p + got, n - got, err);
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    r->offset += got;
    return (ssize_t)got;
}

static int bk_read_exact(struct backup_reader *r, unsigned char *p, size_t n,
                         const char *what, struct error *err)
{
    ssize_t k = bk_read_full(r, p, n, err);
    if (k < 0)
        return -1;
    if ((size_t)k != n)
        return error_set(err, "the backup is truncated: it ends inside its "
                         "%s (not a complete Wharf backup)", what);
    return 0;
}

/* Read the JSON and the key block after the fixed part, hashing all. */
static int bk_read_header_rest(struct backup_reader *r,
                               const unsigned char *fixed, struct error *err)
{
    size_t jlen = (size_t)bk_get_be(fixed + 16, 4);
    unsigned char kl[4];
    unsigned int n = 0;
    if (jlen > BACKUP_JSON_MAX)
        return error_set(err, "the backup header is damaged (its JSON part "
                         "claims %zu bytes)", jlen);
    char *json = malloc(jlen + 1);
    if (json == NULL)
        return error_set(err, "out of memory");
    int rc = bk_read_exact(r, (unsigned char *)json, jlen, "header", err);
    if (rc == 0)
        rc = bk_read_exact(r, kl, 4, "header", err);
    r->klen = rc == 0 ? (size_t)bk_get_be(kl, 4) : 0;
    if (rc == 0 && (r->klen == 0 || r->klen > BACKUP_KEYBLOCK_MAX))
        rc = error_set(err, "the backup header is damaged (its key block "
                       "claims %zu bytes)", r->klen);
    if (rc == 0 && (r->keyblock = malloc(r->klen)) == NULL)
        rc = error_set(err, "out of memory");
    if (rc == 0)
        rc = bk_read_exact(r, r->keyblock, r->klen, "key block", err);
    EVP_MD_CTX *h = rc == 0 ? bk_sha_new() : NULL;
    if (rc == 0 && (h == NULL || EVP_DigestUpdate(h, fixed, BK_FIXED) != 1 ||
                    EVP_DigestUpdate(h, json, jlen) != 1 ||
                    EVP_DigestUpdate(h, kl, 4) != 1 ||
                    EVP_DigestUpdate(h, r->keyblock, r->klen) != 1 ||
                    EVP_DigestFinal_ex(h, r->hhash, &n) != 1))
        rc = error_openssl(err, "cannot hash the backup header");
    EVP_MD_CTX_free(h);
    if (rc == 0)
        rc = backup_info_parse(json, jlen, &r->info, err);
    free(json);
    return rc;
}

static int bk_read_header(struct backup_reader *r, struct error *err)
{
    unsigned char fixed[BK_FIXED];
    ssize_t k = bk_read_full(r, fixed, sizeof(fixed), err);
    if (k < 0)
        return -1;
    if ((size_t)k < 9 || memcmp(fixed, BACKUP_MAGIC, 8) != 0)
        return error_set(err, "not a Wharf backup (no WHBACKUP header)");
    if (fixed[8] != BACKUP_VERSION)
        return error_set(err, "backup format version %u is not supported by "
                         "this wharf (it reads version %d)", fixed[8],
                         BACKUP_VERSION);
    if ((size_t)k < sizeof(fixed))
        return error_set(err, "the backup is truncated: it ends inside its "
                         "header");
    memcpy(r->prefix, fixed + 9, BACKUP_PREFIX_LEN);
    if (bk_read_header_rest(r, fixed, err) != 0)
        return -1;
    if (EVP_DigestUpdate(r->manifest, BK_MANIFEST_DOMAIN,
                         strlen(BK_MANIFEST_DOMAIN)) != 1 ||
        EVP_DigestUpdate(r->manifest, r->hhash, 32) != 1)
        return error_openssl(err, "cannot hash the manifest");
    return 0;
}

struct backup_reader *backup_reader_open(backup_read_fn src, void *ctx,
                                         struct error *err)
{
    struct backup_reader *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    r->src = src;
    r->src_ctx = ctx;
    r->ctx = bk_ctx_new(0);
    r->entry_sha = bk_sha_new();
    r->manifest = bk_sha_new();
    r->raw = malloc(BK_RAW);
    if (r->ctx == NULL || r->entry_sha == NULL || r->manifest == NULL ||
        r->raw == NULL) {
        error_set(err, "out of memory");
        backup_reader_free(r);
        return NULL;
    }
    if (bk_read_header(r, err) != 0) {
        backup_reader_free(r);
        return NULL;
    }
    return r;
}

const struct backup_info *backup_reader_info(const struct backup_reader *r)
{
    return &r->info;
}

const unsigned char *backup_reader_keyblock(const struct backup_reader *r,
                                            size_t *n)
{
    *n = r->klen;
    return r->keyblock;
}

void backup_reader_key(struct backup_reader *r, const unsigned char *key)
{
    memcpy(r->key, key, BACKUP_KEY_LEN);
    r->have_key = 1;
}

/* Read, verify and decrypt the next segment into raw[0..plen). The byte
 * read ahead after a segment that was not the final one starts it. */
static int bk_next_segment(struct backup_reader *r, struct error *err)
{
    if (r->final_seen)
        return error_set(err, "the backup is damaged: its records run past "
                         "its final segment");
    if (r->index > BK_MAX_SEGMENTS)
        return error_set(err, "the backup is damaged: too many segments");
    r->have = 0;
    if (r->index > 0)
        r->raw[r->have++] = r->raw[BK_SEALED];
    uint64_t at = r->offset - r->have;
    ssize_t k = bk_read_full(r, r->raw + r->have, BK_RAW - r->have, err);
    if (k < 0)
        return -1;
    r->have += (size_t)k;
    if (r->have <= BK_TAG)
        return error_set(err, "the backup is truncated: it ends at byte "
                         "%llu, before its trailer",
                         (unsigned long long)r->offset);
    int last = r->have <= BK_SEALED;
    size_t clen = (last ? r->have : BK_SEALED) - BK_TAG;
    if (!r->have_key ||
        bk_gcm(r->ctx, 0, r->key, r->prefix, r->hhash, r->index, last,
               r->raw, clen, r->raw + clen) != 0)
        return error_set(err, "the backup is damaged or was modified: "
                         "segment %llu (at byte %llu) does not authenticate "
                         "(a changed, cut or reordered byte, or not this "
                         "backup's key)", (unsigned long long)r->index,
                         (unsigned long long)at);
    r->plen = clen;
    r->ppos = 0;
    r->index++;
    r->final_seen = last;
    return 0;
}

/* Exactly n plaintext bytes into p (NULL: skip them). */
static int bk_take(struct backup_reader *r, unsigned char *p, size_t n,
                   struct error *err)
{
    while (n > 0) {
        if (r->ppos == r->plen) {
            if (r->final_seen)
                return error_set(err, "the backup is damaged: it ends "
                                 "inside a record (no trailer)");
            if (bk_next_segment(r, err) != 0)
                return -1;
            continue;
        }
        size_t k = r->plen - r->ppos < n ? r->plen - r->ppos : n;
        if (p != NULL) {
            memcpy(p, r->raw + r->ppos, k);
            p += k;
        }
        r->ppos += k;
        n -= k;
    }
    return 0;
}

/* After an error, every later call repeats it. */
static int bk_fail(struct backup_reader *r, struct error *err)
{
    if (!r->failed) {
        r->failed = 1;
        r->first = err != NULL ? *err : r->first;
        if (err == NULL)
            error_set(&r->first, "the backup could not be read");
    }
    if (err != NULL)
        *err = r->first;
    return -1;
}

/* The entry's data is all read: check its SHA-256, add it to the
 * manifest. */
static int bk_entry_close(struct backup_reader *r, struct error *err)
{
    unsigned char want[32], got[32];
    unsigned int n = 0;
    if (bk_take(r, want, 32, err) != 0)
        return -1;
    if (EVP_DigestFinal_ex(r->entry_sha, got, &n) != 1)
        return error_openssl(err, "cannot hash an entry");
    if (CRYPTO_memcmp(want, got, 32) != 0)
        return error_set(err, "the backup is damaged: the bytes of %s do "
                         "not match its SHA-256", r->cur.name);
    if (bk_manifest_add(r->manifest, r->cur.kind, r->cur.name, r->cur.size,
                        got) != 0)
        return error_openssl(err, "cannot hash the manifest");
    r->in_entry = 0;
    r->entries++;
    r->total += r->cur.size;
    return 0;
}

/* Read and hash the data of the current entry, up to n bytes into p
 * (NULL: skip). The count. */
static ssize_t bk_entry_read(struct backup_reader *r, unsigned char *p,
                             size_t n, struct error *err)
{
    unsigned char skip[4096];
    size_t k = r->left < n ? (size_t)r->left : n;
    if (p == NULL) {
        k = k < sizeof(skip) ? k : sizeof(skip);
        p = skip;
    }
    if (bk_take(r, p, k, err) != 0)
        return -1;
    if (EVP_DigestUpdate(r->entry_sha, p, k) != 1)
        return error_openssl(err, "cannot hash an entry");
    r->left -= k;
    return (ssize_t)k;
}

/* The trailer after its kind byte: counts, manifest, signature; then the
 * stream must end. */
static int bk_trailer(struct backup_reader *r, struct error *err)
{
    unsigned char t[BK_TRAILER_LEN - 1], m[32];
    if (bk_take(r, t, sizeof(t), err) != 0)
        return -1;
    struct backup_trailer *tr = &r->trailer;
    tr->entries = bk_get_be(t, 8);
    tr->bytes = bk_get_be(t + 8, 8);
    memcpy(tr->manifest, t + 16, 32);
    memcpy(tr->key_id, t + 48, BACKUP_KEY_ID_LEN);
    tr->key_id[BACKUP_KEY_ID_LEN] = '\0';
    memcpy(tr->sig, t + 48 + BACKUP_KEY_ID_LEN, BACKUP_SIG_LEN);
    if (bk_sha_peek(r->manifest, m) != 0)
        return error_openssl(err, "cannot hash the manifest");
    if (tr->entries != r->entries || tr->bytes != r->total ||
        CRYPTO_memcmp(m, tr->manifest, 32) != 0)
        return error_set(err, "the backup is damaged: its trailer does not "
                         "match its entries");
    if (!bk_is_hex(tr->key_id, BACKUP_KEY_ID_LEN))
        return error_set(err, "the backup is damaged: its trailer names no "
                         "signing key");
    if (r->ppos != r->plen || !r->final_seen)
        return error_set(err, "the backup is damaged: data follows its "
                         "trailer");
    r->done = 1;
    return 0;
}

/* An entry's head after its kind byte. */
static int bk_entry_head(struct backup_reader *r, unsigned char kind,
                         struct backup_entry *e, struct error *err)
{
    unsigned char nl[2], sz[8];
    if (bk_take(r, nl, 2, err) != 0)
        return -1;
    size_t n = (size_t)bk_get_be(nl, 2);
    if (n == 0 || n > BACKUP_NAME_MAX)
        return error_set(err, "the backup is damaged: an entry name of %zu "
                         "bytes", n);
    if (bk_take(r, (unsigned char *)e->name, n, err) != 0 ||
        bk_take(r, sz, 8, err) != 0)
        return -1;
    e->name[n] = '\0';
    e->kind = (enum backup_entry_kind)kind;
    e->size = bk_get_be(sz, 8);
    if (strlen(e->name) != n || !backup_name_ok(e->name))
        return error_set(err, "the backup names an unsafe entry (a path "
                         "that is absolute, has \"..\" or odd characters)");
    if (kind == BACKUP_ENTRY_MISSING && e->size != 0)
        return error_set(err, "the backup is damaged: a missing entry with "
                         "data");
    if (e->size > (UINT64_C(1) << 62))
        return error_set(err, "the backup is damaged: entry %s claims "
                         "%llu bytes", e->name, (unsigned long long)e->size);
    if (EVP_DigestInit_ex(r->entry_sha, EVP_sha256(), NULL) != 1)
        return error_openssl(err, "cannot hash an entry");
    r->cur = *e;
    r->left = e->size;
    r->in_entry = 1;
    return 0;
}

static int bk_next(struct backup_reader *r, struct backup_entry *e,
                   struct error *err)
{
    unsigned char kind;
    if (!r->have_key)
        return error_set(err, "internal: no content key given");
    while (r->in_entry) {
        if (r->left > 0 && bk_entry_read(r, NULL, (size_t)r->left, err) < 0)
            return -1;
        if (r->left == 0 && bk_entry_close(r, err) != 0)
            return -1;
    }
    if (bk_take(r, &kind, 1, err) != 0)
        return -1;
    if (kind == 'E')
        return bk_trailer(r, err) == 0 ? 0 : -1;
    if (kind != BACKUP_ENTRY_FILE && kind != BACKUP_ENTRY_MISSING)
        return error_set(err, "the backup is damaged: unknown record kind "
                         "0x%02x", kind);
    return bk_entry_head(r, kind, e, err) == 0 ? 1 : -1;
}

int backup_reader_next(struct backup_reader *r, struct backup_entry *e,
                       struct error *err)
{
    if (r->failed)
        return bk_fail(r, err);
    if (r->done)
        return 0;
    memset(e, 0, sizeof(*e));
    int rc = bk_next(r, e, err);
    return rc < 0 ? bk_fail(r, err) : rc;
}

ssize_t backup_reader_data(struct backup_reader *r, void *p, size_t n,
                           struct error *err)
{
    if (r->failed)
        return bk_fail(r, err);
    if (!r->in_entry)
        return 0;
    if (r->left == 0)
        return bk_entry_close(r, err) == 0 ? 0 : bk_fail(r, err);
    ssize_t k = bk_entry_read(r, p, n, err);
    return k < 0 ? bk_fail(r, err) : k;
}

const struct backup_trailer *backup_reader_trailer(
    const struct backup_reader *r)
{
    return r->done ? &r->trailer : NULL;
}

uint64_t backup_reader_offset(const struct backup_reader *r)
{
    return r->offset;
}

void backup_reader_free(struct backup_reader *r)
{
    if (r == NULL)
        return;
    OPENSSL_cleanse(r->key, sizeof(r->key));
    if (r->raw != NULL)
        OPENSSL_cleanse(r->raw, BK_RAW);
    free(r->raw);
    free(r->keyblock);
    EVP_CIPHER_CTX_free(r->ctx);
    EVP_MD_CTX_free(r->entry_sha);
    EVP_MD_CTX_free(r->manifest);
    free(r);
}
