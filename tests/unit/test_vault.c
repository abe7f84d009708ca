/*
 * test_vault.c - unit tests of the vault (R15 envelope encryption at rest,
 * M2 durability/integrity of payload files): keystore loading, rotation,
 * payload round trips, and every way a payload file can be damaged.
 * Each test owns a temp dir (created in setup, removed in teardown).
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "vault/kms.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

#define SEG PAYLOAD_SEGMENT
#define HDR PAYLOAD_HEADER_LEN
#define SEALED (SEG + PAYLOAD_TAG_LEN)
#define BIG (3 * SEG + 5)
#define MSGID "0193a6f2-7c1e-7b3a-9f00-1234567890ab"
#define MSGID2 "0193a6f2-7c1e-7b3a-9f00-ba0987654321"

struct fx {
    char dir[256];
    char ks[320];
    char file[320];
    struct vault *v;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->ks, sizeof(f->ks), "%s/keystore", f->dir);
    snprintf(f->file, sizeof(f->file), "%s/payload", f->dir);
    struct error err = {0};
    if (vault_create(f->ks, &err) != 0)
        fail_msg("vault_create: %s", err.msg);
    f->v = vault_open(f->ks, &err);
    if (f->v == NULL)
        fail_msg("vault_open: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vault_close(f->v);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static unsigned char *rand_buf(size_t n)
{
    unsigned char *p = malloc(n + 1);
    assert_non_null(p);
    if (n > 0)
        assert_int_equal(RAND_bytes(p, (int)n), 1);
    return p;
}

static void sha_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(p, n, md, &len, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static size_t expected_file_size(size_t n)
{
    size_t segs = n == 0 ? 1 : (n + SEG - 1) / SEG;
    return HDR + segs * PAYLOAD_TAG_LEN + n;
}

/* Write data in chunk-sized calls; finish with fsync (fd_out NULL). */
static void write_payload(struct vault *v, const char *path, const char *msgid,
                          const unsigned char *data, size_t n, size_t chunk,
                          struct payload_info *info)
{
    struct error err = {0};
    struct payload_writer *w = payload_create(v, path, msgid, &err);
    if (w == NULL)
        fail_msg("payload_create: %s", err.msg);
    for (size_t off = 0; off < n; off += chunk) {
        size_t take = n - off < chunk ? n - off : chunk;
        if (payload_write(w, data + off, take, &err) != 0)
            fail_msg("payload_write: %s", err.msg);
    }
    if (payload_finish(w, info, NULL, &err) != 0)
        fail_msg("payload_finish: %s", err.msg);
}

/* Read r to its end in chunk-sized calls into out (cap bytes), *got
 * counting the bytes handed out: 0 at the verified end, -1 on a read
 * error, after checking that the next read fails too. r stays open. */
static int drain_payload(struct payload_reader *r, size_t chunk,
                         unsigned char *out, size_t cap, size_t *got,
                         struct error *err)
{
    unsigned char *tmp = malloc(chunk);
    assert_non_null(tmp);
    int rc = 0;
    for (;;) {
        ssize_t n = payload_read(r, tmp, chunk, err);
        if (n == 0)
            break;
        if (n < 0) {
            struct error again = {0};
            assert_int_equal(payload_read(r, tmp, chunk, &again), -1);
            assert_string_equal(again.msg, err->msg);
            rc = -1;
            break;
        }
        assert_true((size_t)n <= chunk);
        assert_true(*got + (size_t)n <= cap);
        memcpy(out + *got, tmp, (size_t)n);
        *got += (size_t)n;
    }
    free(tmp);
    return rc;
}

/* Read the whole payload file in chunk-sized calls into out (cap bytes):
 * as drain_payload, -1 too when it does not open. */
static int read_payload(struct vault *v, const char *path, const char *msgid,
                        size_t chunk, unsigned char *out, size_t cap,
                        size_t *got, struct error *err)
{
    *got = 0;
    struct payload_reader *r = payload_open(v, path, msgid, err);
    if (r == NULL)
        return -1;
    int rc = drain_payload(r, chunk, out, cap, got, err);
    payload_close(r);
    return rc;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long len = ftell(fp);
    assert_true(len >= 0);
    rewind(fp);
    unsigned char *p = malloc((size_t)len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return p;
}

static void spit(const char *path, const void *p, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void flip_byte(const char *path, size_t off)
{
    size_t n;
    unsigned char *p = slurp(path, &n);
    assert_true(off < n);
    p[off] ^= 0x01;
    spit(path, p, n, 0600);
    free(p);
}

static void append_bytes(const char *path, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    unsigned char *p = rand_buf(n);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    close(fd);
    free(p);
}

/* Write BIG random bytes for MSGID to f->file; caller frees the result. */
static unsigned char *big_payload(struct fx *f)
{
    unsigned char *data = rand_buf(BIG);
    write_payload(f->v, f->file, MSGID, data, BIG, BIG, NULL);
    return data;
}

/* Expect reading f->file to fail after exactly `good` correct bytes, with
 * an error naming MSGID and containing `what`. */
static void expect_read_fails(struct fx *f, const unsigned char *data,
                              size_t good, const char *what)
{
    struct error err = {0};
    size_t got = 0;
    unsigned char *out = malloc(BIG + SEG);
    assert_non_null(out);
    assert_int_equal(read_payload(f->v, f->file, MSGID, 4096, out, BIG + SEG,
                                  &got, &err), -1);
    assert_int_equal(got, good);
    if (good > 0)
        assert_memory_equal(out, data, good);
    assert_non_null(strstr(err.msg, "message " MSGID));
    if (strstr(err.msg, what) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", what, err.msg);
    free(out);
}

static int count_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* ---- round trips ------------------------------------------------------ */

static void test_r15_roundtrip_sizes(void **state)
{
    struct fx *f = *state;
    const size_t sizes[] = { 0, 1, 65535, 65536, 65537, BIG };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        char path[400], want[65], back[65];
        snprintf(path, sizeof(path), "%s/p%zu", f->dir, n);
        unsigned char *data = rand_buf(n);
        struct payload_info info;
        memset(&info, 0, sizeof(info));
        write_payload(f->v, path, MSGID, data, n, i % 2 ? 1000 : n + 1, &info);
        sha_hex(data, n, want);
        assert_int_equal(info.size, n);
        assert_string_equal(info.sha256, want);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal((size_t)st.st_size, expected_file_size(n));
        assert_int_equal(st.st_mode & 0777, 0600);
        unsigned char *out = malloc(n + 1);
        size_t got = 0;
        struct error err = {0};
        if (read_payload(f->v, path, MSGID, SEG, out, n, &got, &err) != 0)
            fail_msg("size %zu: %s", n, err.msg);
        assert_int_equal(got, n);
        sha_hex(out, got, back);
        assert_string_equal(back, want);
        if (n > 0)
            assert_memory_equal(out, data, n);
        free(out);
        free(data);
    }
}

static void test_r15_read_in_odd_chunks(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    const size_t chunks[] = { 7, 100000, SEG + 1, 1 };
    unsigned char *out = malloc(BIG);
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        size_t got = 0;
        struct error err = {0};
        memset(out, 0, BIG);
        if (read_payload(f->v, f->file, MSGID, chunks[i], out, BIG, &got,
                         &err) != 0)
            fail_msg("chunk %zu: %s", chunks[i], err.msg);
        assert_int_equal(got, BIG);
        assert_memory_equal(out, data, BIG);
    }
    free(out);
    free(data);
}

static void test_r15_finish_fd_out_hands_back_open_fd(void **state)
{
    struct fx *f = *state;
    unsigned char *data = rand_buf(SEG + 10);
    struct error err = {0};
    struct payload_info info;
    struct payload_writer *w = payload_create(f->v, f->file, MSGID, &err);
    assert_non_null(w);
    assert_int_equal(payload_write(w, data, SEG + 10, &err), 0);
    int fd = -1;
    assert_int_equal(payload_finish(w, &info, &fd, &err), 0);
    assert_true(fd >= 0);
    int flags = fcntl(fd, F_GETFD);
    assert_true(flags >= 0 && (flags & FD_CLOEXEC));
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((size_t)st.st_size, expected_file_size(SEG + 10));
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(info.size, SEG + 10);
    unsigned char *out = malloc(SEG + 10);
    size_t got = 0;
    assert_int_equal(read_payload(f->v, f->file, MSGID, 5000, out, SEG + 10,
                                  &got, &err), 0);
    assert_int_equal(got, SEG + 10);
    assert_memory_equal(out, data, SEG + 10);
    free(out);
    free(data);
}

static void test_r15_abort_removes_file(void **state)
{
    struct fx *f = *state;
    unsigned char *data = rand_buf(100000);
    struct error err = {0};
    struct payload_writer *w = payload_create(f->v, f->file, MSGID, &err);
    assert_non_null(w);
    assert_int_equal(payload_write(w, data, 100000, &err), 0);
    assert_int_equal(access(f->file, F_OK), 0);
    payload_abort(w);
    assert_int_equal(access(f->file, F_OK), -1);
    assert_int_equal(errno, ENOENT);
    payload_abort(NULL);
    free(data);
}

static void test_r15_payload_create_refuses_existing(void **state)
{
    struct fx *f = *state;
    spit(f->file, "keep me", 7, 0600);
    struct error err = {0};
    assert_null(payload_create(f->v, f->file, MSGID, &err));
    assert_non_null(strstr(err.msg, MSGID));
    size_t n;
    unsigned char *p = slurp(f->file, &n);   /* still there, untouched */
    assert_int_equal(n, 7);
    assert_memory_equal(p, "keep me", 7);
    free(p);
}

/* AES-256-GCM open with EVP directly, as the format comment documents. */
static int gcm_open(const unsigned char *key, const unsigned char *nonce,
                    const unsigned char *aad, size_t aadlen,
                    const unsigned char *ct, size_t n, const unsigned char *tag,
                    unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c != NULL &&
        EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
        EVP_DecryptUpdate(c, NULL, &len, aad, (int)aadlen) == 1 &&
        (n == 0 || EVP_DecryptUpdate(c, out, &len, ct, (int)n) == 1) &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1 &&
        EVP_DecryptFinal_ex(c, out + n, &len) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* Decrypt segment idx of file p independently of payload.c. */
static void open_segment_by_spec(const unsigned char *p, const unsigned char
                                 *dkey, size_t idx, size_t n, int last,
                                 const unsigned char *want)
{
    unsigned char nonce[12], aad[200], out[SEG + 16];
    size_t m = strlen(MSGID);
    memcpy(nonce, p + PAYLOAD_OFF_PREFIX, 7);
    for (int i = 0; i < 4; i++)
        nonce[7 + i] = (unsigned char)(idx >> (8 * (3 - i)));
    nonce[11] = (unsigned char)last;
    memcpy(aad, MSGID, m);
    for (int i = 0; i < 8; i++)
        aad[m + i] = (unsigned char)((uint64_t)idx >> (8 * (7 - i)));
    memcpy(aad + m + 8, p + PAYLOAD_OFF_PREFIX, 7);
    const unsigned char *seg = p + HDR + idx * SEALED;
    assert_true(gcm_open(dkey, nonce, aad, m + 15, seg, n, seg + n, out));
    assert_memory_equal(out, want, n);
}

static void test_r15_file_format_matches_spec(void **state)
{
    struct fx *f = *state;
    unsigned char *data = rand_buf(SEG + 300);
    write_payload(f->v, f->file, MSGID, data, SEG + 300, 777, NULL);
    size_t n;
    unsigned char *p = slurp(f->file, &n);
    assert_int_equal(n, HDR + SEG + 300 + 2 * 16);
    assert_memory_equal(p, "WHPAYLD1", 8);
    assert_int_equal(p[8], 1);
    assert_memory_equal(p + 9, vault_active_id(f->v), 16);
    /* wrap: AAD = magic|version|key id|prefix || message id */
    unsigned char aad[32 + sizeof(MSGID)], dkey[32 + 16];
    memcpy(aad, p, 32);
    memcpy(aad + 32, MSGID, strlen(MSGID));
    const struct vault_key *mk = keystore_active(f->v);
    assert_true(gcm_open(mk->key, p + 32, aad, 32 + strlen(MSGID), p + 44, 32,
                         p + 76, dkey));
    open_segment_by_spec(p, dkey, 0, SEG, 0, data);
    open_segment_by_spec(p, dkey, 1, 300, 1, data + SEG);
    free(p);
    free(data);
}

/* ---- damaged payloads ------------------------------------------------- */

static void test_m2_header_byte_flip_refused(void **state)
{
    struct fx *f = *state;
    unsigned char *data = rand_buf(1000);
    write_payload(f->v, f->file, MSGID, data, 1000, 1000, NULL);
    for (size_t off = 0; off < HDR; off++) {
        struct error err = {0};
        flip_byte(f->file, off);
        struct payload_reader *r = payload_open(f->v, f->file, MSGID, &err);
        if (r != NULL)
            fail_msg("header byte %zu flipped but payload_open succeeded", off);
        assert_non_null(strstr(err.msg, "message " MSGID));
        if (off == 0)
            assert_non_null(strstr(err.msg, "bad header"));
        if (off >= PAYLOAD_OFF_KEYID && off < PAYLOAD_OFF_PREFIX)
            assert_true(strstr(err.msg, "unknown master key") != NULL ||
                        strstr(err.msg, "bad master key id") != NULL);
        if (off >= PAYLOAD_OFF_PREFIX)
            assert_non_null(strstr(err.msg, "does not unwrap"));
        flip_byte(f->file, off);
    }
    size_t got = 0;
    struct error err = {0};
    unsigned char out[1000];
    assert_int_equal(read_payload(f->v, f->file, MSGID, 1000, out, 1000, &got,
                                  &err), 0);
    assert_int_equal(got, 1000);
    free(data);
}

static void test_m2_flip_in_segment0_returns_nothing(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    flip_byte(f->file, HDR + 10);
    expect_read_fails(f, data, 0, "payload segment 0 failed authentication");
    free(data);
}

static void test_m2_flip_in_middle_segment(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    flip_byte(f->file, HDR + 2 * SEALED + 500);
    expect_read_fails(f, data, 2 * SEG,
                      "payload segment 2 failed authentication");
    free(data);
}

static void test_m2_flip_in_last_tag(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    flip_byte(f->file, expected_file_size(BIG) - 1);
    expect_read_fails(f, data, 3 * SEG,
                      "payload segment 3 failed authentication");
    free(data);
}

static void test_m2_truncated_at_segment_boundary(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    assert_int_equal(truncate(f->file, HDR + 2 * SEALED), 0);
    expect_read_fails(f, data, SEG, "payload truncated (no final segment");
    assert_int_equal(truncate(f->file, HDR), 0);
    expect_read_fails(f, data, 0, "payload truncated (no final segment");
    free(data);
}

static void test_m2_truncated_mid_segment(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    assert_int_equal(truncate(f->file, HDR + SEALED + 1000), 0);
    expect_read_fails(f, data, SEG, "payload segment 1 failed authentication");
    assert_int_equal(truncate(f->file, HDR + 10), 0);
    expect_read_fails(f, data, 0, "payload truncated");
    assert_int_equal(truncate(f->file, HDR - 1), 0);
    struct error err = {0};
    assert_null(payload_open(f->v, f->file, MSGID, &err));
    assert_non_null(strstr(err.msg, "truncated inside its header"));
    free(data);
}

static void test_m2_appended_bytes_refused(void **state)
{
    struct fx *f = *state;
    /* final segment full: the appended byte is seen as extra data */
    unsigned char *data = rand_buf(2 * SEG);
    write_payload(f->v, f->file, MSGID, data, 2 * SEG, 3000, NULL);
    append_bytes(f->file, 1);
    expect_read_fails(f, data, SEG, "payload has data after its final segment");
    free(data);
    /* final segment short: it no longer authenticates */
    assert_int_equal(unlink(f->file), 0);
    data = rand_buf(100);
    write_payload(f->v, f->file, MSGID, data, 100, 100, NULL);
    append_bytes(f->file, 5);
    expect_read_fails(f, data, 0, "payload segment 0 failed authentication");
    free(data);
}

static void swap_segments(const char *path, size_t a, size_t b)
{
    size_t n;
    unsigned char *p = slurp(path, &n);
    unsigned char *tmp = malloc(SEALED);
    memcpy(tmp, p + HDR + a * SEALED, SEALED);
    memcpy(p + HDR + a * SEALED, p + HDR + b * SEALED, SEALED);
    memcpy(p + HDR + b * SEALED, tmp, SEALED);
    spit(path, p, n, 0600);
    free(tmp);
    free(p);
}

static void test_m2_reordered_segments_refused(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    swap_segments(f->file, 1, 2);
    expect_read_fails(f, data, SEG, "payload segment 1 failed authentication");
    swap_segments(f->file, 1, 2);
    swap_segments(f->file, 0, 1);
    expect_read_fails(f, data, 0, "payload segment 0 failed authentication");
    free(data);
}

static void test_m2_other_message_id_refused(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    struct error err = {0};
    assert_null(payload_open(f->v, f->file, MSGID2, &err));
    assert_non_null(strstr(err.msg, "message " MSGID2));
    assert_non_null(strstr(err.msg, "does not unwrap"));
    free(data);
}

static void test_m2_wrong_master_key_refused(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    /* a keystore with the same key id but other key bytes */
    unsigned char key[32];
    char hex[65], text[200], path[400];
    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    keystore_hex(key, sizeof(key), hex);
    snprintf(text, sizeof(text), "wharf-keystore 1\nmaster %s %s active\n",
             vault_active_id(f->v), hex);
    snprintf(path, sizeof(path), "%s/other-keystore", f->dir);
    spit(path, text, strlen(text), 0600);
    struct error err = {0};
    struct vault *v2 = vault_open(path, &err);
    if (v2 == NULL)
        fail_msg("vault_open: %s", err.msg);
    assert_string_equal(vault_active_id(v2), vault_active_id(f->v));
    assert_null(payload_open(v2, f->file, MSGID, &err));
    assert_non_null(strstr(err.msg, "message " MSGID));
    assert_non_null(strstr(err.msg, "data key does not unwrap"));
    vault_close(v2);
    free(data);
}

static void test_m2_unknown_master_key_refused(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    char path[400], want[200];
    struct error err = {0};
    snprintf(path, sizeof(path), "%s/keystore2", f->dir);
    assert_int_equal(vault_create(path, &err), 0);
    struct vault *v2 = vault_open(path, &err);
    assert_non_null(v2);
    assert_string_not_equal(vault_active_id(v2), vault_active_id(f->v));
    assert_null(payload_open(v2, f->file, MSGID, &err));
    snprintf(want, sizeof(want), "message %s: payload sealed with unknown "
             "master key %s", MSGID, vault_active_id(f->v));
    assert_string_equal(err.msg, want);
    vault_close(v2);
    free(data);
}

/* ---- keystore --------------------------------------------------------- */

static void test_r15_keystore_group_readable_refused(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    assert_int_equal(chmod(f->ks, 0640), 0);
    assert_null(vault_open(f->ks, &err));
    assert_non_null(strstr(err.msg, f->ks));
    assert_non_null(strstr(err.msg, "mode 0640"));
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(chmod(f->ks, 0604), 0);
    assert_null(vault_open(f->ks, &err));
    assert_non_null(strstr(err.msg, "mode 0604"));
    assert_int_equal(chmod(f->ks, 0600), 0);
    struct vault *v = vault_open(f->ks, &err);
    assert_non_null(v);
    vault_close(v);
}

#define ID1 "0123456789abcdef"
#define ID2 "fedcba9876543210"
#define KEY64 "00112233445566778899aabbccddeeff" \
              "00112233445566778899aabbccddeeff"
#define KS1 "wharf-keystore 1\n"

static void test_r15_keystore_malformed_refused(void **state)
{
    struct fx *f = *state;
    struct { const char *text; const char *want; } bad[] = {
        { "", "is empty" },
        { "wharf-keystore 2\nmaster " ID1 " " KEY64 " active\n",
          "first line" },
        { KS1, "no active master key" },
        { KS1 "master " ID1 " " KEY64 "0 active\n", "line 2 is malformed" },
        { KS1 "master " ID1 " 0011 active\n", "line 2 is malformed" },
        { KS1 "master 0123456789ABCDEF " KEY64 " active\n",
          "line 2 is malformed" },
        { KS1 "master " ID1 " " KEY64 " enabled\n", "line 2 is malformed" },
        { KS1 "master " ID1 "  " KEY64 " active\n", "line 2 is malformed" },
        { KS1 "master " ID1 " " KEY64 " active\n\n", "line 3 is malformed" },
        { KS1 "master " ID1 " " KEY64 " retired\n", "no active" },
        { KS1 "master " ID1 " " KEY64 " active\nmaster " ID2 " " KEY64
          " active\n", "more than one active" },
        { KS1 "master " ID1 " " KEY64 " active\nmaster " ID1 " " KEY64
          " retired\n", "repeats key id" },
    };
    char path[400];
    snprintf(path, sizeof(path), "%s/bad-keystore", f->dir);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct error err = {0};
        spit(path, bad[i].text, strlen(bad[i].text), 0600);
        struct vault *v = vault_open(path, &err);
        if (v != NULL)
            fail_msg("case %zu: malformed keystore accepted", i);
        assert_non_null(strstr(err.msg, path));
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("case %zu: expected \"%s\" in \"%s\"", i, bad[i].want,
                     err.msg);
    }
    /* control: well formed, no final newline, active key second */
    const char *good = KS1 "master " ID1 " " KEY64 " retired\nmaster " ID2
                       " " KEY64 " active";
    spit(path, good, strlen(good), 0600);
    struct error err = {0};
    struct vault *v = vault_open(path, &err);
    if (v == NULL)
        fail_msg("valid keystore refused: %s", err.msg);
    assert_string_equal(vault_active_id(v), ID2);
    vault_close(v);
}

static void test_r15_keystore_file_format(void **state)
{
    struct fx *f = *state;
    struct stat st;
    assert_int_equal(stat(f->ks, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char line[200], old_id[17];
    snprintf(old_id, sizeof(old_id), "%s", vault_active_id(f->v));
    size_t n;
    unsigned char *p = slurp(f->ks, &n);
    snprintf(line, sizeof(line), "wharf-keystore 1\nmaster %s ", old_id);
    assert_int_equal(n, strlen(line) + 64 + strlen(" active\n") +
                     strlen("audit-ed25519 ") + 16 + 1 + 64 +
                     strlen(" active\n"));   /* + the audit key line */
    assert_memory_equal(p, line, strlen(line));
    assert_memory_equal(p + n - 8, " active\n", 8);
    free(p);
    struct error err = {0};
    assert_int_equal(vault_rotate(f->v, f->ks, &err), 0);
    assert_string_not_equal(vault_active_id(f->v), old_id);
    p = slurp(f->ks, &n);
    char *text = strndup((char *)p, n);
    snprintf(line, sizeof(line), "master %s ", vault_active_id(f->v));
    char *act = strstr(text, line);
    assert_non_null(act);
    assert_non_null(strstr(act, " active\n"));
    snprintf(line, sizeof(line), "master %s ", old_id);
    char *ret = strstr(text, line);
    assert_non_null(ret);
    assert_memory_equal(ret + strlen(line) + 64, " retired\n", 9);
    assert_int_equal(stat(f->ks, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* the keystore and its lock file, no temp left */
    assert_int_equal(count_dir_entries(f->dir), 2);
    free(text);
    free(p);
}

static void test_r15_vault_create_refuses_existing(void **state)
{
    struct fx *f = *state;
    size_t n1, n2;
    unsigned char *before = slurp(f->ks, &n1);
    struct error err = {0};
    assert_int_equal(vault_create(f->ks, &err), -1);
    assert_non_null(strstr(err.msg, "already exists"));
    assert_non_null(strstr(err.msg, f->ks));
    unsigned char *after = slurp(f->ks, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(before, after, n1);
    assert_int_equal(count_dir_entries(f->dir), 2);    /* + keystore.lock */
    free(before);
    free(after);
}

/* ---- rotation --------------------------------------------------------- */

static void test_m2_rotation_rewraps_header_only(void **state)
{
    struct fx *f = *state;
    unsigned char *data = big_payload(f);
    char stale[400], old_id[17];
    snprintf(stale, sizeof(stale), "%s/stale", f->dir);
    write_payload(f->v, stale, MSGID2, data, 10, 10, NULL);
    snprintf(old_id, sizeof(old_id), "%s", vault_active_id(f->v));
    size_t n0, n1, n2;
    unsigned char *before = slurp(f->file, &n0);
    struct error err = {0};
    assert_int_equal(vault_rotate(f->v, f->ks, &err), 0);
    assert_string_not_equal(vault_active_id(f->v), old_id);
    assert_int_equal(payload_rewrap(f->v, f->file, MSGID, &err), 1);
    unsigned char *after = slurp(f->file, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(after + HDR, before + HDR, n0 - HDR);
    assert_memory_equal(after + PAYLOAD_OFF_KEYID, vault_active_id(f->v), 16);
    assert_memory_not_equal(before + PAYLOAD_OFF_KEYID,
                            after + PAYLOAD_OFF_KEYID, 16);
    assert_memory_equal(after + PAYLOAD_OFF_PREFIX, before + PAYLOAD_OFF_PREFIX,
                        PAYLOAD_PREFIX_LEN);
    unsigned char *out = malloc(BIG);
    size_t got = 0;
    assert_int_equal(read_payload(f->v, f->file, MSGID, 8192, out, BIG, &got,
                                  &err), 0);
    assert_int_equal(got, BIG);
    assert_memory_equal(out, data, BIG);
    assert_int_equal(payload_rewrap(f->v, f->file, MSGID, &err), 0);
    unsigned char *again = slurp(f->file, &n2);
    assert_int_equal(n2, n1);
    assert_memory_equal(again, after, n1);
    /* the old key still opens the stale file until it is retired */
    struct vault *v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    assert_int_equal(read_payload(v2, stale, MSGID2, 100, out, BIG, &got,
                                  &err), 0);
    vault_close(v2);
    assert_int_equal(vault_retire_old(f->v, f->ks, &err), 0);
    v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    assert_string_equal(vault_active_id(v2), vault_active_id(f->v));
    assert_int_equal(read_payload(v2, f->file, MSGID, 8192, out, BIG, &got,
                                  &err), 0);
    assert_int_equal(got, BIG);
    assert_memory_equal(out, data, BIG);
    assert_int_equal(read_payload(f->v, f->file, MSGID, 8192, out, BIG, &got,
                                  &err), 0);
    assert_int_equal(read_payload(v2, stale, MSGID2, 100, out, BIG, &got,
                                  &err), -1);
    assert_non_null(strstr(err.msg, "unknown master key"));
    assert_non_null(strstr(err.msg, old_id));
    assert_int_equal(payload_rewrap(v2, stale, MSGID2, &err), -1);
    vault_close(v2);
    free(again);
    free(out);
    free(after);
    free(before);
    free(data);
}

/* ---- rotation: the keystore lock and an unfinished rotation ----------- */

static void test_r15_rotation_lock_keeps_other_holders_out(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    /* two holders (as serve and a CLI command): both read the keystore */
    struct vault *v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    /* neither may rotate while the other has it in memory */
    assert_int_equal(vault_lock_exclusive(v2, &err), -1);
    assert_non_null(strstr(err.msg, "has the keystore open"));
    vault_close(f->v);
    f->v = NULL;
    assert_int_equal(vault_lock_exclusive(v2, &err), 0);
    /* while a rotation holds it, nobody loads the keystore */
    struct vault *v3 = vault_open(f->ks, &err);
    assert_null(v3);
    assert_non_null(strstr(err.msg, "is being rotated by `wharf key "
                           "rotate`"));
    assert_non_null(strstr(err.msg, f->ks));
    vault_close(v2);                /* the rotation ends: the lock goes */
    f->v = vault_open(f->ks, &err);
    assert_non_null(f->v);
    char lock[400];
    struct stat st;
    snprintf(lock, sizeof(lock), "%s.lock", f->ks);
    assert_int_equal(stat(lock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 0);        /* a lock, it holds nothing */
}

static void test_r15_unfinished_rotation_is_visible(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    char old_id[17];
    snprintf(old_id, sizeof(old_id), "%s", vault_active_id(f->v));
    assert_int_equal(vault_key_count(f->v), 1);
    assert_string_equal(vault_key_id(f->v, 0), old_id);
    assert_null(vault_key_id(f->v, 1));
    assert_int_equal(vault_rotate(f->v, f->ks, &err), 0);
    /* killed here: the keystore on disk says the rotation is unfinished */
    struct vault *v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    assert_int_equal(vault_key_count(v2), 2);
    assert_string_equal(vault_active_id(v2), vault_active_id(f->v));
    int seen_old = 0;
    for (size_t i = 0; i < vault_key_count(v2); i++)
        seen_old += strcmp(vault_key_id(v2, i), old_id) == 0;
    assert_int_equal(seen_old, 1);
    assert_int_equal(vault_retire_old(v2, f->ks, &err), 0);
    assert_int_equal(vault_key_count(v2), 1);
    vault_close(v2);
    v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    assert_int_equal(vault_key_count(v2), 1);
    assert_string_equal(vault_key_id(v2, 0), vault_active_id(f->v));
    vault_close(v2);
}

/* ---- payloads on an io (R21: payload_dir = database) ------------------ */

/* An in-memory payload_io, as core/payloads.c keeps rows: every write is a
 * row appended to one growable buffer (row_end[i] where row i ends); a
 * read hands out at most `chunk` bytes from pos. Owned by the test: the
 * vault's release only counts. Failures on demand: the write numbered
 * fail_write (1-based), the commit, any read once pos reaches
 * fail_read_at (0: never). */
#define MEMIO_ROWS 64
struct memio {
    unsigned char *buf;
    size_t len, cap, pos, chunk;
    size_t row_end[MEMIO_ROWS];
    size_t rows;
    int fail_write, fail_commit;
    size_t fail_read_at;
    int writes, commits, releases, discarded;
};

static int memio_write(void *ctx, const void *p, size_t n, struct error *err)
{
    struct memio *m = ctx;
    if (++m->writes == m->fail_write)
        return error_set(err, "memio: write %d refused", m->writes);
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->buf = realloc(m->buf, m->cap);
        assert_non_null(m->buf);
    }
    if (n > 0)
        memcpy(m->buf + m->len, p, n);
    m->len += n;
    assert_true(m->rows < MEMIO_ROWS);
    m->row_end[m->rows++] = m->len;
    return 0;
}

static ssize_t memio_read(void *ctx, void *p, size_t n, struct error *err)
{
    struct memio *m = ctx;
    if (m->fail_read_at > 0 && m->pos >= m->fail_read_at)
        return error_set(err, "memio: the database went away");
    size_t take = m->len - m->pos;
    take = take < n ? take : n;
    take = m->chunk > 0 && take > m->chunk ? m->chunk : take;
    if (take > 0)
        memcpy(p, m->buf + m->pos, take);
    m->pos += take;
    return (ssize_t)take;
}

static int memio_commit(void *ctx, struct error *err)
{
    struct memio *m = ctx;
    m->commits++;
    return m->fail_commit ? error_set(err, "memio: commit refused") : 0;
}

static void memio_release(void *ctx, int discard)
{
    struct memio *m = ctx;
    m->releases++;
    m->discarded += discard != 0;
}

static struct payload_io memio_writer(struct memio *m)
{
    return (struct payload_io){ .write = memio_write, .commit = memio_commit,
                                .release = memio_release, .ctx = m };
}

/* The reader's io: from the first byte, counters reset. */
static struct payload_io memio_reader(struct memio *m)
{
    m->pos = 0;
    m->releases = m->discarded = 0;
    return (struct payload_io){ .read = memio_read, .release = memio_release,
                                .ctx = m };
}

static void memio_free(struct memio *m)
{
    free(m->buf);
    memset(m, 0, sizeof(*m));
}

/* Write data (n bytes, in chunk-sized calls) for msgid to m; asserts it
 * was committed once and released once, nothing discarded. */
static void memio_put(struct vault *v, struct memio *m, const char *msgid,
                      const unsigned char *data, size_t n, size_t chunk,
                      struct payload_info *info)
{
    struct error err = {0};
    struct payload_io io = memio_writer(m);
    struct payload_writer *w = payload_create_io(v, &io, msgid, &err);
    if (w == NULL)
        fail_msg("payload_create_io: %s", err.msg);
    for (size_t off = 0; off < n; off += chunk) {
        size_t take = n - off < chunk ? n - off : chunk;
        if (payload_write(w, data + off, take, &err) != 0)
            fail_msg("payload_write: %s", err.msg);
    }
    int fd = 7;
    if (payload_finish(w, info, &fd, &err) != 0)
        fail_msg("payload_finish: %s", err.msg);
    assert_int_equal(fd, -1);           /* no file to hand back */
    assert_int_equal(m->commits, 1);
    assert_int_equal(m->releases, 1);
    assert_int_equal(m->discarded, 0);
}

/* Read m back for msgid (in reads of chunk bytes) into out (cap bytes):
 * 0 at the verified end, -1 with err; *got the bytes handed out. The io
 * is released exactly once either way, and a failed read fails again. */
static int memio_get(struct vault *v, struct memio *m, const char *msgid,
                     size_t chunk, unsigned char *out, size_t cap,
                     size_t *got, struct error *err)
{
    *got = 0;
    struct payload_io io = memio_reader(m);
    struct payload_reader *r = payload_open_io(v, &io, msgid, err);
    if (r == NULL) {
        assert_int_equal(m->releases, 1);
        return -1;
    }
    int rc = drain_payload(r, chunk, out, cap, got, err);
    assert_int_equal(m->releases, 0);
    payload_close(r);
    assert_int_equal(m->releases, 1);
    assert_int_equal(m->discarded, 0);
    return rc;
}

#define IO_BIG (300 * 1024)     /* 5 segments, the last one short */

/* IO_BIG random bytes for MSGID into m; caller frees the result. */
static unsigned char *memio_big(struct fx *f, struct memio *m)
{
    unsigned char *data = rand_buf(IO_BIG);
    memio_put(f->v, m, MSGID, data, IO_BIG, 10000, NULL);
    return data;
}

static int g_integrity_calls;
static char g_integrity_id[64];

static void count_integrity(const char *what, const char *id,
                            const char *problem)
{
    (void)problem;
    if (strcmp(what, "payload") == 0)
        g_integrity_calls++;
    snprintf(g_integrity_id, sizeof(g_integrity_id), "%s", id);
}

/* Reading m for MSGID fails after exactly `good` correct bytes of data,
 * with an error naming MSGID and holding `what`; the integrity hook is
 * told once when integrity says so. */
static void memio_expect_fails(struct fx *f, struct memio *m,
                               const unsigned char *data, size_t good,
                               const char *what, int integrity)
{
    struct error err = {0};
    size_t got = 0;
    unsigned char *out = malloc(IO_BIG);
    assert_non_null(out);
    g_integrity_calls = 0;
    vault_set_integrity_hook(count_integrity);
    int rc = memio_get(f->v, m, MSGID, 4096, out, IO_BIG, &got, &err);
    vault_set_integrity_hook(NULL);
    assert_int_equal(rc, -1);
    assert_int_equal(got, good);
    if (good > 0)
        assert_memory_equal(out, data, good);
    if (strstr(err.msg, what) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", what, err.msg);
    assert_int_equal(g_integrity_calls, integrity);
    if (integrity) {
        assert_non_null(strstr(err.msg, "message " MSGID));
        assert_string_equal(g_integrity_id, MSGID);
    }
    free(out);
}

/* The same sizes as the file round trip, through an io: a row per write
 * (the header, then each sealed segment), the bytes those of a payload
 * file (a file holding them opens with payload_open), read back in short
 * reads byte-identical. */
static void test_r21_payload_io_round_trip(void **state)
{
    struct fx *f = *state;
    const size_t sizes[] = { 0, 1, SEG, SEG + 1, IO_BIG };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i], got = 0;
        char want[65];
        struct memio m;
        memset(&m, 0, sizeof(m));
        unsigned char *data = rand_buf(n);
        struct payload_info info;
        memset(&info, 0, sizeof(info));
        memio_put(f->v, &m, MSGID, data, n, i % 2 ? 1000 : n + 1, &info);
        sha_hex(data, n, want);
        assert_int_equal(info.size, n);
        assert_string_equal(info.sha256, want);
        size_t segs = n == 0 ? 1 : (n + SEG - 1) / SEG;
        assert_int_equal(m.len, expected_file_size(n));
        assert_int_equal(m.rows, 1 + segs);
        assert_int_equal(m.row_end[0], HDR);
        for (size_t r = 1; r + 1 < m.rows; r++)
            assert_int_equal(m.row_end[r] - m.row_end[r - 1], SEALED);
        unsigned char *out = malloc(n + 1);
        assert_non_null(out);
        struct error err = {0};
        m.chunk = 777;
        if (memio_get(f->v, &m, MSGID, 5000, out, n, &got, &err) != 0)
            fail_msg("size %zu: %s", n, err.msg);
        assert_int_equal(got, n);
        if (n > 0)
            assert_memory_equal(out, data, n);
        spit(f->file, m.buf, m.len, 0600);      /* the file format too */
        if (read_payload(f->v, f->file, MSGID, SEG, out, n, &got, &err) != 0)
            fail_msg("size %zu as a file: %s", n, err.msg);
        assert_int_equal(got, n);
        assert_int_equal(unlink(f->file), 0);
        free(out);
        free(data);
        memio_free(&m);
    }
}

/* A byte flipped in a segment's row: the segments before it are handed
 * out, then the read fails naming that segment, an integrity failure. */
static void test_r21_payload_io_flipped_segment_byte_names_the_segment(
    void **state)
{
    struct fx *f = *state;
    struct memio m;
    memset(&m, 0, sizeof(m));
    unsigned char *data = memio_big(f, &m);
    assert_int_equal(m.rows, 6);
    m.buf[m.row_end[2] + 100] ^= 0x01;          /* row 3: segment 2 */
    memio_expect_fails(f, &m, data, 2 * SEG,
                       "payload segment 2 failed authentication", 1);
    m.buf[m.row_end[2] + 100] ^= 0x01;
    m.buf[m.len - 1] ^= 0x80;                   /* the final tag */
    memio_expect_fails(f, &m, data, 4 * SEG,
                       "payload segment 4 failed authentication", 1);
    m.buf[m.len - 1] ^= 0x80;
    m.buf[HDR] ^= 0x01;                         /* segment 0: nothing out */
    memio_expect_fails(f, &m, data, 0,
                       "payload segment 0 failed authentication", 1);
    free(data);
    memio_free(&m);
}

/* Rows missing at the end: without the final row, without any segment,
 * and with the header cut short; each refused. */
static void test_r21_payload_io_truncated_rows_refused(void **state)
{
    struct fx *f = *state;
    struct memio m;
    memset(&m, 0, sizeof(m));
    unsigned char *data = memio_big(f, &m);
    size_t full = m.len;
    m.len = m.row_end[m.rows - 2];              /* the final row dropped */
    memio_expect_fails(f, &m, data, 3 * SEG,
                       "payload truncated (no final segment after segment 3)",
                       1);
    m.len = m.row_end[0];                       /* the header alone */
    memio_expect_fails(f, &m, data, 0, "payload truncated (no final "
                       "segment", 1);
    m.len = m.row_end[m.rows - 1] - 1;          /* the last tag cut */
    memio_expect_fails(f, &m, data, 4 * SEG, "payload segment 4 failed "
                       "authentication", 1);
    m.len = 50;                                 /* inside the header */
    struct error err = {0};
    size_t got = 0;
    unsigned char out[16];
    assert_int_equal(memio_get(f->v, &m, MSGID, 16, out, 16, &got, &err), -1);
    assert_non_null(strstr(err.msg, "truncated inside its header"));
    m.len = full;
    unsigned char *back = malloc(IO_BIG);
    assert_int_equal(memio_get(f->v, &m, MSGID, 4096, back, IO_BIG, &got,
                               &err), 0);
    assert_memory_equal(back, data, IO_BIG);
    free(back);
    free(data);
    memio_free(&m);
}

/* The io is the vault's from the call on: released exactly once whatever
 * happens (a write, the header's, the commit refused; an abort; a bad
 * message id; a bad or missing header on open; a reader closed early),
 * with discard set for every writer that did not commit. */
static void test_r21_payload_io_released_once_on_every_path(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct memio m;
    unsigned char *data = rand_buf(3 * SEG);
    /* the header's write refused: create fails */
    memset(&m, 0, sizeof(m));
    m.fail_write = 1;
    struct payload_io io = memio_writer(&m);
    assert_null(payload_create_io(f->v, &io, MSGID, &err));
    assert_non_null(strstr(err.msg, "write 1 refused"));
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.discarded, 1);
    memio_free(&m);
    /* an empty message id: create fails before any write */
    io = memio_writer(&m);
    assert_null(payload_create_io(f->v, &io, "", &err));
    assert_int_equal(m.writes, 0);
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.discarded, 1);
    memio_free(&m);
    /* a segment's write refused, then the caller aborts */
    m.fail_write = 3;
    io = memio_writer(&m);
    struct payload_writer *w = payload_create_io(f->v, &io, MSGID, &err);
    assert_non_null(w);
    int rc = payload_write(w, data, 3 * SEG, &err);
    if (rc == 0)
        rc = payload_finish(w, NULL, NULL, &err);
    else
        payload_abort(w);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "write 3 refused"));
    assert_int_equal(m.commits, 0);
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.discarded, 1);
    memio_free(&m);
    /* the commit refused: finish fails */
    m.fail_commit = 1;
    io = memio_writer(&m);
    w = payload_create_io(f->v, &io, MSGID, &err);
    assert_non_null(w);
    assert_int_equal(payload_write(w, data, 1000, &err), 0);
    assert_int_equal(payload_finish(w, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "commit refused"));
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.discarded, 1);
    memio_free(&m);
    /* an abort */
    io = memio_writer(&m);
    w = payload_create_io(f->v, &io, MSGID, &err);
    assert_non_null(w);
    assert_int_equal(payload_write(w, data, 2 * SEG, &err), 0);
    payload_abort(w);
    assert_int_equal(m.commits, 0);
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.discarded, 1);
    memio_free(&m);
    /* readers: bad magic, an empty message id, no bytes at all */
    memio_put(f->v, &m, MSGID, data, 2 * SEG, SEG, NULL);
    m.buf[0] ^= 0x01;
    io = memio_reader(&m);
    assert_null(payload_open_io(f->v, &io, MSGID, &err));
    assert_non_null(strstr(err.msg, "bad header"));
    assert_int_equal(m.releases, 1);
    m.buf[0] ^= 0x01;
    io = memio_reader(&m);
    assert_null(payload_open_io(f->v, &io, "", &err));
    assert_int_equal(m.releases, 1);
    size_t full = m.len;
    m.len = 0;
    io = memio_reader(&m);
    assert_null(payload_open_io(f->v, &io, MSGID, &err));
    assert_int_equal(m.releases, 1);
    m.len = full;
    /* a reader closed before its end */
    io = memio_reader(&m);
    struct payload_reader *r = payload_open_io(f->v, &io, MSGID, &err);
    assert_non_null(r);
    unsigned char buf[100];
    assert_int_equal(payload_read(r, buf, sizeof(buf), &err), 100);
    assert_memory_equal(buf, data, 100);
    payload_close(r);
    assert_int_equal(m.releases, 1);
    assert_int_equal(m.discarded, 0);
    memio_free(&m);
    free(data);
}

/* The io failing while a segment is read (the database went away) is the
 * io's error, not an integrity failure: no integrity alert for it. */
static void test_r21_payload_io_read_error_is_not_tampering(void **state)
{
    struct fx *f = *state;
    struct memio m;
    memset(&m, 0, sizeof(m));
    unsigned char *data = memio_big(f, &m);
    m.fail_read_at = m.row_end[2];              /* after two segments */
    memio_expect_fails(f, &m, data, 2 * SEG, "the database went away", 0);
    free(data);
    memio_free(&m);
}

/* Rotation of a header kept elsewhere: payload_header_rewrap re-wraps it
 * with the new active key (1), then finds nothing to do (0); only the
 * header's key id, wrap nonce and wrapped key changed; the payload still
 * opens, also once the old key is retired; another message id neither
 * re-wraps nor opens it. */
static void test_r21_payload_io_header_rewrap_after_rotation(void **state)
{
    struct fx *f = *state;
    struct memio m;
    memset(&m, 0, sizeof(m));
    unsigned char *data = memio_big(f, &m);
    unsigned char *before = malloc(m.len);
    assert_non_null(before);
    memcpy(before, m.buf, m.len);
    char old_id[17];
    snprintf(old_id, sizeof(old_id), "%s", vault_active_id(f->v));
    struct error err = {0};
    assert_int_equal(payload_header_rewrap(f->v, m.buf, HDR, MSGID, &err), 0);
    assert_memory_equal(m.buf, before, m.len);
    assert_int_equal(vault_rotate(f->v, f->ks, &err), 0);
    assert_string_not_equal(vault_active_id(f->v), old_id);
    assert_int_equal(payload_header_rewrap(f->v, m.buf, HDR, MSGID2, &err),
                     -1);
    assert_memory_equal(m.buf, before, HDR);
    assert_int_equal(payload_header_rewrap(f->v, m.buf, HDR - 1, MSGID,
                                           &err), -1);
    assert_int_equal(payload_header_rewrap(f->v, m.buf, HDR, MSGID, &err), 1);
    assert_memory_equal(m.buf + PAYLOAD_OFF_KEYID, vault_active_id(f->v),
                        VAULT_KEY_ID_LEN);
    assert_memory_equal(m.buf, before, PAYLOAD_OFF_KEYID);
    assert_memory_equal(m.buf + PAYLOAD_OFF_PREFIX,
                        before + PAYLOAD_OFF_PREFIX, PAYLOAD_PREFIX_LEN);
    assert_memory_equal(m.buf + HDR, before + HDR, m.len - HDR);
    unsigned char *after = malloc(HDR);
    memcpy(after, m.buf, HDR);
    assert_int_equal(payload_header_rewrap(f->v, m.buf, HDR, MSGID, &err), 0);
    assert_memory_equal(m.buf, after, HDR);
    assert_int_equal(vault_retire_old(f->v, f->ks, &err), 0);
    unsigned char *out = malloc(IO_BIG);
    size_t got = 0;
    if (memio_get(f->v, &m, MSGID, 8192, out, IO_BIG, &got, &err) != 0)
        fail_msg("after rotation: %s", err.msg);
    assert_int_equal(got, IO_BIG);
    assert_memory_equal(out, data, IO_BIG);
    assert_int_equal(memio_get(f->v, &m, MSGID2, 8192, out, IO_BIG, &got,
                               &err), -1);
    assert_non_null(strstr(err.msg, "message " MSGID2));
    free(out);
    free(after);
    free(before);
    free(data);
    memio_free(&m);
}

/* R15: a KMS-sealed keystore that is not well formed is refused before
 * any KMS is asked, saying what is wrong; a well-formed one without a
 * kms_command says that one is needed. */
static void test_r15_kms_sealed_keystore_malformed_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "wharf-keystore-kms 1\nkek abc\n",
        "wharf-keystore-kms 1\nbody QUJD\n",
        "wharf-keystore-kms 1\nkek abc\nbody QUJDRA=\n",
        "wharf-keystore-kms 1\nkek abc\nbody QUJD\nextra\n",
        "wharf-keystore-kms 1\nkek abc\nbody QUJD",
        "wharf-keystore-kms 1\nkek abc\nbody QUJD\n",  /* too short */
    };
    char out[256];
    size_t n;
    kms_set("");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct error err = {0};
        assert_true(kms_is_sealed(bad[i], strlen(bad[i])));
        assert_int_equal(kms_open(bad[i], strlen(bad[i]), "ks", out,
                                  sizeof(out), &n, &err), -1);
        if (strstr(err.msg, "keystore ks is malformed") == NULL)
            fail_msg("%zu: %s", i, err.msg);
    }
    char good[200] = "wharf-keystore-kms 1\nkek abc\nbody ";
    memset(good + strlen(good), 'A', 64);
    strcat(good, "\n");
    struct error err = {0};
    assert_int_equal(kms_open(good, strlen(good), "ks", out, sizeof(out), &n,
                              &err), -1);
    assert_non_null(strstr(err.msg, "wharf.conf has no kms_command"));
    assert_false(kms_is_sealed("wharf-keystore 1\n", 17));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_r15_roundtrip_sizes),
        T(test_r15_read_in_odd_chunks),
        T(test_r15_file_format_matches_spec),
        T(test_r15_finish_fd_out_hands_back_open_fd),
        T(test_r15_abort_removes_file),
        T(test_r15_payload_create_refuses_existing),
        T(test_m2_header_byte_flip_refused),
        T(test_m2_flip_in_segment0_returns_nothing),
        T(test_m2_flip_in_middle_segment),
        T(test_m2_flip_in_last_tag),
        T(test_m2_truncated_at_segment_boundary),
        T(test_m2_truncated_mid_segment),
        T(test_m2_appended_bytes_refused),
        T(test_m2_reordered_segments_refused),
        T(test_m2_other_message_id_refused),
        T(test_m2_wrong_master_key_refused),
        T(test_m2_unknown_master_key_refused),
        T(test_r15_keystore_group_readable_refused),
        T(test_r15_keystore_malformed_refused),
        T(test_r15_kms_sealed_keystore_malformed_refused),
        T(test_r15_keystore_file_format),
        T(test_r15_vault_create_refuses_existing),
        T(test_m2_rotation_rewraps_header_only),
        T(test_r15_rotation_lock_keeps_other_holders_out),
        T(test_r15_unfinished_rotation_is_visible),
        T(test_r21_payload_io_round_trip),
        T(test_r21_payload_io_flipped_segment_byte_names_the_segment),
        T(test_r21_payload_io_truncated_rows_refused),
        T(test_r21_payload_io_released_once_on_every_path),
        T(test_r21_payload_io_read_error_is_not_tampering),
        T(test_r21_payload_io_header_rewrap_after_rotation),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
