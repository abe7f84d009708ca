/*
 * test_vault_seal.c - unit tests of the vault's small sealed secrets and
 * its Ed25519 audit signing keys (R15): seal/unseal/reseal and every way a
 * sealed blob can be wrong; sign/verify and every way a signature can be
 * wrong; the audit key line of the keystore. Only vault.h is used: the
 * test sees the vault from outside, plus the keystore file's text. Each
 * test owns a temp dir (created in setup, removed in teardown).
 */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/secret.h"
#include "vault/vault.h"

#define SEAL_HDR 29             /* version + key id + nonce */
#define SEAL_OVER (SEAL_HDR + 16)
#define CTX "totp:alice"

struct fx {
    char dir[256];
    char ks[320];
    struct vault *v;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->ks, sizeof(f->ks), "%s/keystore", f->dir);
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

static char *slurp_text(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *p = calloc(1, 16384);
    assert_non_null(p);
    size_t n = fread(p, 1, 16383, fp);
    assert_true(n > 0);
    fclose(fp);
    return p;
}

static void spit(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, 0600), 0);
    close(fd);
}

static struct vault *open_text(struct fx *f, const char *name,
                               const char *text)
{
    char path[400];
    struct error err = {0};
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    spit(path, text);
    struct vault *v = vault_open(path, &err);
    if (v == NULL)
        fail_msg("vault_open(%s): %s", name, err.msg);
    return v;
}

/* The line of text that starts with prefix, copied to out (no LF). */
static int find_line(const char *text, const char *prefix, char *out,
                     size_t outsz)
{
    const char *p = text;
    int count = 0;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            if (count++ == 0)
                snprintf(out, outsz, "%.*s", (int)len, p);
        }
        p = nl ? nl + 1 : NULL;
    }
    return count;
}

static unsigned char *seal_str(struct vault *v, const char *context,
                               const char *value, size_t *len)
{
    struct secret *s = secret_from(value, strlen(value));
    unsigned char *blob = NULL;
    struct error err = {0};
    if (vault_seal(v, context, s, &blob, len, &err) != 0)
        fail_msg("vault_seal: %s", err.msg);
    secret_free(s);
    return blob;
}

/* Unseal must fail; err gets the reason. */
static void expect_unseal_fails(struct vault *v, const char *context,
                                const unsigned char *blob, size_t len,
                                const char *want)
{
    struct error err = {0};
    struct secret *s = vault_unseal(v, context, blob, len, &err);
    if (s != NULL) {
        secret_free(s);
        fail_msg("a bad sealed value opened (len %zu, context %s)", len,
                 context);
    }
    assert_true(err.msg[0] != '\0');
    if (want != NULL && strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
}

static void expect_unseal_ok(struct vault *v, const char *context,
                             const unsigned char *blob, size_t len,
                             const char *value)
{
    struct error err = {0};
    struct secret *s = vault_unseal(v, context, blob, len, &err);
    if (s == NULL)
        fail_msg("vault_unseal: %s", err.msg);
    assert_int_equal(secret_len(s), strlen(value));
    assert_memory_equal(secret_data(s), value, strlen(value));
    secret_free(s);
}

/* ---- sealed values ---------------------------------------------------- */

static void test_r15_seal_roundtrip(void **state)
{
    struct fx *f = *state;
    const char *values[] = { "", "x", "JBSWY3DPEHPK3PXP",
        "a client secret that is rather longer than one AES block......" };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        size_t len, len2;
        unsigned char *blob = seal_str(f->v, CTX, values[i], &len);
        assert_int_equal(len, strlen(values[i]) + SEAL_OVER);
        assert_int_equal(blob[0], 1);
        assert_memory_equal(blob + 1, vault_active_id(f->v), 16);
        if (strlen(values[i]) >= 8)
            assert_null(memmem(blob, len, values[i], strlen(values[i])));
        expect_unseal_ok(f->v, CTX, blob, len, values[i]);
        /* a fresh nonce each time: the same value seals differently */
        unsigned char *again = seal_str(f->v, CTX, values[i], &len2);
        assert_int_equal(len2, len);
        assert_memory_not_equal(again, blob, len);
        free(again);
        free(blob);
    }
    /* a context is required */
    struct secret *s = secret_from("v", 1);
    unsigned char *blob = NULL;
    size_t len = 0;
    struct error err = {0};
    assert_int_equal(vault_seal(f->v, "", s, &blob, &len, &err), -1);
    assert_null(blob);
    assert_int_equal(vault_seal(f->v, NULL, s, &blob, &len, &err), -1);
    assert_non_null(strstr(err.msg, "context"));
    secret_free(s);
}

static void test_r15_seal_wrong_context_refused(void **state)
{
    struct fx *f = *state;
    size_t len;
    unsigned char *blob = seal_str(f->v, CTX, "JBSWY3DPEHPK3PXP", &len);
    expect_unseal_fails(f->v, "totp:bob", blob, len, "does not open");
    expect_unseal_fails(f->v, "totp:alic", blob, len, "does not open");
    expect_unseal_fails(f->v, "totp:alice2", blob, len, "does not open");
    expect_unseal_fails(f->v, "oidc:alice", blob, len, "does not open");
    expect_unseal_ok(f->v, CTX, blob, len, "JBSWY3DPEHPK3PXP");
    free(blob);
}

static void test_r15_seal_flipped_byte_refused(void **state)
{
    struct fx *f = *state;
    size_t len;
    unsigned char *blob = seal_str(f->v, CTX, "JBSWY3DPEHPK3PXP", &len);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            blob[i] ^= (unsigned char)(1u << bit);
            expect_unseal_fails(f->v, CTX, blob, len,
                                i == 0 ? "unsupported version" : NULL);
            blob[i] ^= (unsigned char)(1u << bit);
        }
    }
    /* a ciphertext or tag byte: the message names the failure */
    blob[SEAL_HDR + 3] ^= 0x40;
    expect_unseal_fails(f->v, CTX, blob, len, "does not open");
    blob[SEAL_HDR + 3] ^= 0x40;
    blob[len - 1] ^= 0x01;
    expect_unseal_fails(f->v, CTX, blob, len, "does not open");
    blob[len - 1] ^= 0x01;
    expect_unseal_ok(f->v, CTX, blob, len, "JBSWY3DPEHPK3PXP");
    free(blob);
}

static void test_r15_seal_truncated_refused(void **state)
{
    struct fx *f = *state;
    size_t len;
    unsigned char *blob = seal_str(f->v, CTX, "JBSWY3DPEHPK3PXP", &len);
    for (size_t n = 0; n < len; n++)
        expect_unseal_fails(f->v, CTX, blob, n,
                            n < SEAL_OVER ? "truncated" : "does not open");
    expect_unseal_fails(f->v, CTX, NULL, 0, "truncated");
    /* one byte appended */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, blob, len);
    longer[len] = 0;
    expect_unseal_fails(f->v, CTX, longer, len + 1, "does not open");
    free(longer);
    free(blob);
}

static void test_r15_seal_other_keystore_refused(void **state)
{
    struct fx *f = *state;
    size_t len;
    unsigned char *blob = seal_str(f->v, CTX, "JBSWY3DPEHPK3PXP", &len);
    char path[400], want[100];
    struct error err = {0};
    snprintf(path, sizeof(path), "%s/keystore2", f->dir);
    assert_int_equal(vault_create(path, &err), 0);
    struct vault *v2 = vault_open(path, &err);
    assert_non_null(v2);
    snprintf(want, sizeof(want), "unknown master key %s",
             vault_active_id(f->v));
    expect_unseal_fails(v2, CTX, blob, len, want);
    vault_close(v2);
    /* the same key id with other key bytes */
    unsigned char key[32];
    char hex[65], text[300];
    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(text, sizeof(text), "wharf-keystore 1\nmaster %s %s active\n",
             vault_active_id(f->v), hex);
    v2 = open_text(f, "keystore3", text);
    expect_unseal_fails(v2, CTX, blob, len, "does not open");
    vault_close(v2);
    free(blob);
}

static void test_r15_reseal_after_rotate(void **state)
{
    struct fx *f = *state;
    size_t len, nlen = 99;
    unsigned char *blob = seal_str(f->v, CTX, "JBSWY3DPEHPK3PXP", &len);
    unsigned char *fresh = (unsigned char *)"x";
    struct error err = {0};
    char old_id[17];
    snprintf(old_id, sizeof(old_id), "%s", vault_active_id(f->v));
    /* current: nothing to do */
    assert_int_equal(vault_reseal(f->v, CTX, blob, len, &fresh, &nlen, &err),
                     0);
    assert_null(fresh);
    assert_int_equal(nlen, 0);
    assert_int_equal(vault_rotate(f->v, f->ks, &err), 0);
    assert_string_not_equal(vault_active_id(f->v), old_id);
    /* a wrong context is an error, not a reseal */
    assert_int_equal(vault_reseal(f->v, "totp:bob", blob, len, &fresh, &nlen,
                                  &err), -1);
    assert_null(fresh);
    assert_int_equal(vault_reseal(f->v, CTX, blob, len, &fresh, &nlen, &err),
                     1);
    assert_non_null(fresh);
    assert_int_equal(nlen, len);
    assert_memory_equal(fresh + 1, vault_active_id(f->v), 16);
    expect_unseal_ok(f->v, CTX, fresh, nlen, "JBSWY3DPEHPK3PXP");
    unsigned char *again = NULL;
    size_t alen = 0;
    assert_int_equal(vault_reseal(f->v, CTX, fresh, nlen, &again, &alen,
                                  &err), 0);
    assert_null(again);
    /* once the old key is retired only the resealed blob opens */
    assert_int_equal(vault_retire_old(f->v, f->ks, &err), 0);
    struct vault *v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    expect_unseal_ok(v2, CTX, fresh, nlen, "JBSWY3DPEHPK3PXP");
    expect_unseal_fails(v2, CTX, blob, len, old_id);
    vault_close(v2);
    free(fresh);
    free(blob);
}

/* ---- audit signatures ------------------------------------------------- */

static const char MSG[] = "wharf-audit-checkpoint v1\n64\n"
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n";

static void sign_msg(struct vault *v, const void *msg, size_t n,
                     unsigned char sig[VAULT_SIG_LEN], char id[17])
{
    struct error err = {0};
    if (vault_audit_sign(v, msg, n, sig, id, &err) != 0)
        fail_msg("vault_audit_sign: %s", err.msg);
}

static void expect_verify_fails(struct vault *v, const char *id,
                                const void *msg, size_t n,
                                const unsigned char *sig, const char *want)
{
    struct error err = {0};
    if (vault_audit_verify(v, id, msg, n, sig, &err) == 0)
        fail_msg("a bad signature verified");
    if (strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
}

/* The seed hex of the audit-ed25519 line of id in the keystore text. */
static void audit_seed(const char *ks, const char *id, unsigned char seed[32])
{
    char *text = slurp_text(ks), prefix[64], line[200];
    snprintf(prefix, sizeof(prefix), "audit-ed25519 %s ", id);
    assert_int_equal(find_line(text, prefix, line, sizeof(line)), 1);
    for (int i = 0; i < 32; i++) {
        unsigned b;
        assert_int_equal(sscanf(line + strlen(prefix) + 2 * i, "%2x", &b), 1);
        seed[i] = (unsigned char)b;
    }
    free(text);
}

static void test_r15_audit_sign_verify_roundtrip(void **state)
{
    struct fx *f = *state;
    unsigned char sig[VAULT_SIG_LEN], sig2[VAULT_SIG_LEN];
    char id[17], id2[17];
    struct error err = {0};
    sign_msg(f->v, MSG, strlen(MSG), sig, id);
    assert_int_equal(strlen(id), 16);
    assert_string_not_equal(id, vault_active_id(f->v));
    assert_int_equal(vault_audit_verify(f->v, id, MSG, strlen(MSG), sig, &err),
                     0);
    sign_msg(f->v, MSG, strlen(MSG), sig2, id2);      /* Ed25519: deterministic */
    assert_string_equal(id, id2);
    assert_memory_equal(sig, sig2, VAULT_SIG_LEN);
    /* a fresh vault from the same file verifies too */
    struct vault *v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    assert_int_equal(vault_audit_verify(v2, id, MSG, strlen(MSG), sig, &err),
                     0);
    vault_close(v2);
    /* and it is plain Ed25519: OpenSSL checks it with the key from the
     * keystore line, independently of the vault */
    unsigned char seed[32];
    audit_seed(f->ks, id, seed);
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed,
                                                32);
    assert_non_null(pk);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk), 1);
    assert_int_equal(EVP_DigestVerify(ctx, sig, VAULT_SIG_LEN,
                                      (const unsigned char *)MSG, strlen(MSG)),
                     1);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
}

static void test_r15_audit_verify_refuses_tampering(void **state)
{
    struct fx *f = *state;
    unsigned char sig[VAULT_SIG_LEN];
    char id[17], msg[sizeof(MSG)];
    sign_msg(f->v, MSG, strlen(MSG), sig, id);
    memcpy(msg, MSG, sizeof(MSG));
    for (size_t i = 0; i < strlen(msg); i++) {
        msg[i] ^= 0x01;
        expect_verify_fails(f->v, id, msg, strlen(msg), sig,
                            "signature invalid");
        msg[i] ^= 0x01;
    }
    expect_verify_fails(f->v, id, msg, strlen(msg) - 1, sig,
                        "signature invalid");
    for (size_t i = 0; i < VAULT_SIG_LEN; i++) {
        sig[i] ^= 0x80;
        expect_verify_fails(f->v, id, msg, strlen(msg), sig,
                            "signature invalid");
        sig[i] ^= 0x80;
    }
    expect_verify_fails(f->v, "0000000000000000", msg, strlen(msg), sig,
                        "not in this keystore");
    expect_verify_fails(f->v, vault_active_id(f->v), msg, strlen(msg), sig,
                        "not in this keystore");   /* a master key id */
    expect_verify_fails(f->v, "0000", msg, strlen(msg), sig, "malformed");
    expect_verify_fails(f->v, "0123456789ABCDEF", msg, strlen(msg), sig,
                        "malformed");
    /* another keystore does not know the key */
    char path[400];
    struct error err = {0};
    snprintf(path, sizeof(path), "%s/keystore2", f->dir);
    assert_int_equal(vault_create(path, &err), 0);
    struct vault *v2 = vault_open(path, &err);
    assert_non_null(v2);
    expect_verify_fails(v2, id, msg, strlen(msg), sig,
                        "not in this keystore");
    vault_close(v2);
    /* control: the untouched message still verifies */
    assert_int_equal(vault_audit_verify(f->v, id, msg, strlen(msg), sig,
                                        &err), 0);
}

static void test_r15_keystore_has_audit_line_mode_0600(void **state)
{
    struct fx *f = *state;
    struct stat st;
    assert_int_equal(stat(f->ks, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unsigned char sig[VAULT_SIG_LEN];
    char id[17], line[200], prefix[64];
    sign_msg(f->v, MSG, strlen(MSG), sig, id);
    char *text = slurp_text(f->ks);
    assert_int_equal(find_line(text, "audit-ed25519 ", line, sizeof(line)), 1);
    assert_int_equal(find_line(text, "master ", line, sizeof(line)), 1);
    snprintf(prefix, sizeof(prefix), "audit-ed25519 %s ", id);
    assert_int_equal(find_line(text, prefix, line, sizeof(line)), 1);
    assert_int_equal(strlen(line), strlen(prefix) + 64 + strlen(" active"));
    assert_string_equal(line + strlen(prefix) + 64, " active");
    for (size_t i = strlen(prefix); i < strlen(prefix) + 64; i++)
        assert_non_null(strchr("0123456789abcdef", line[i]));
    free(text);
}

static void test_r15_keystore_without_audit_key(void **state)
{
    struct fx *f = *state;
    struct vault *v = open_text(f, "old-keystore", "wharf-keystore 1\n"
        "master 0123456789abcdef 00112233445566778899aabbccddeeff"
        "00112233445566778899aabbccddeeff active\n");
    unsigned char sig[VAULT_SIG_LEN] = {0};
    char id[17];
    struct error err = {0};
    assert_int_equal(vault_audit_sign(v, MSG, strlen(MSG), sig, id, &err), -1);
    assert_string_equal(err.msg, "keystore has no audit signing key");
    expect_verify_fails(v, "0123456789abcdef", MSG, strlen(MSG), sig,
                        "not in this keystore");
    vault_close(v);
}

static void test_r15_rotate_leaves_audit_key_alone(void **state)
{
    struct fx *f = *state;
    unsigned char sig[VAULT_SIG_LEN];
    char id[17], id2[17], before[200], after[200];
    struct error err = {0};
    sign_msg(f->v, MSG, strlen(MSG), sig, id);
    char *text = slurp_text(f->ks);
    assert_int_equal(find_line(text, "audit-ed25519 ", before,
                               sizeof(before)), 1);
    free(text);
    assert_int_equal(vault_rotate(f->v, f->ks, &err), 0);
    assert_int_equal(vault_retire_old(f->v, f->ks, &err), 0);
    text = slurp_text(f->ks);
    assert_int_equal(find_line(text, "audit-ed25519 ", after, sizeof(after)),
                     1);
    assert_string_equal(before, after);
    free(text);
    struct vault *v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    assert_int_equal(vault_audit_verify(v2, id, MSG, strlen(MSG), sig, &err),
                     0);
    sign_msg(v2, MSG, strlen(MSG), sig, id2);
    assert_string_equal(id, id2);
    vault_close(v2);
}

static void test_r15_retired_audit_key_still_verifies(void **state)
{
    struct fx *f = *state;
    unsigned char sig[VAULT_SIG_LEN], sig2[VAULT_SIG_LEN];
    char id[17], id2[17], line[200], text[1000];
    sign_msg(f->v, MSG, strlen(MSG), sig, id);
    char *ks = slurp_text(f->ks);
    assert_int_equal(find_line(ks, "audit-ed25519 ", line, sizeof(line)), 1);
    free(ks);
    memcpy(line + strlen(line) - strlen("active"), "retired", 8);
    snprintf(text, sizeof(text), "wharf-keystore 1\n"
        "master 0123456789abcdef 00112233445566778899aabbccddeeff"
        "00112233445566778899aabbccddeeff active\n%s\n"
        "audit-ed25519 fedcba9876543210 ffeeddccbbaa99887766554433221100"
        "ffeeddccbbaa99887766554433221100 active\n", line);
    struct vault *v = open_text(f, "mixed", text);
    struct error err = {0};
    assert_int_equal(vault_audit_verify(v, id, MSG, strlen(MSG), sig, &err),
                     0);
    sign_msg(v, MSG, strlen(MSG), sig2, id2);
    assert_string_equal(id2, "fedcba9876543210");
    assert_memory_not_equal(sig, sig2, VAULT_SIG_LEN);
    expect_verify_fails(v, id, MSG, strlen(MSG), sig2, "signature invalid");
    vault_close(v);
}

static void test_r15_keystore_audit_lines_malformed_refused(void **state)
{
    struct fx *f = *state;
#define M "wharf-keystore 1\nmaster 0123456789abcdef " \
          "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" \
          " active\n"
#define S "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    struct { const char *text; const char *want; } bad[] = {
        { M "audit-ed25519 1111111111111111 " S " active\n"
          "audit-ed25519 2222222222222222 " S " active\n",
          "more than one active audit key" },
        { M "audit-ed25519 1111111111111111 " S " active\n"
          "audit-ed25519 1111111111111111 " S " retired\n",
          "repeats audit key id" },
        { M "audit-ed25519 1111111111111111 " S "00 active\n",
          "line 3 is malformed" },
        { M "audit-ed25519 111111111111111G " S " active\n",
          "line 3 is malformed" },
        { M "audit-ed25519 1111111111111111 " S " signing\n",
          "line 3 is malformed" },
        { M "audit-ed448 1111111111111111 " S " active\n",
          "line 3 is malformed" },
        { "wharf-keystore 1\naudit-ed25519 1111111111111111 " S " active\n",
          "no active master key" },
    };
#undef S
#undef M
    char path[400];
    snprintf(path, sizeof(path), "%s/bad", f->dir);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct error err = {0};
        spit(path, bad[i].text);
        struct vault *v = vault_open(path, &err);
        if (v != NULL)
            fail_msg("case %zu: malformed keystore accepted", i);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("case %zu: expected \"%s\" in \"%s\"", i, bad[i].want,
                     err.msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_r15_seal_roundtrip),
        T(test_r15_seal_wrong_context_refused),
        T(test_r15_seal_flipped_byte_refused),
        T(test_r15_seal_truncated_refused),
        T(test_r15_seal_other_keystore_refused),
        T(test_r15_reseal_after_rotate),
        T(test_r15_audit_sign_verify_roundtrip),
        T(test_r15_audit_verify_refuses_tampering),
        T(test_r15_keystore_has_audit_line_mode_0600),
        T(test_r15_keystore_without_audit_key),
        T(test_r15_rotate_leaves_audit_key_alone),
        T(test_r15_retired_audit_key_still_verifies),
        T(test_r15_keystore_audit_lines_malformed_refused),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
