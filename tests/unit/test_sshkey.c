/*
 * test_sshkey.c - SSH user keys for the key process (R15): src/vault/
 * sshkey.c against the real ssh-keygen (/usr/bin/ssh-keygen) as the
 * independent peer. Keys of every type are made by ssh-keygen once (group
 * setup), in OpenSSH, PEM and PKCS#8 forms; each parsed key's public blob
 * must equal the .pub file's, and each signature must verify twice: with
 * OpenSSL against a key this test builds from the .pub blob itself, and
 * (for the algorithms SSHSIG allows) by `ssh-keygen -Y verify` on an
 * SSHSIG made around the signature. Refusals: encrypted OpenSSH keys (with
 * a hint that works), RSA 1024, truncation and every single flipped byte
 * (but the one the format allows: an empty comment taking one byte of
 * padding, kept as a key ssh-keygen made), check numbers that differ, a private key that is not the file's public
 * key, trailing bytes, wrong or missing passphrases; no error message
 * quotes key bytes (checked for every refusal).
 */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "util/secret.h"
#include "vault/sshkey.h"

#define SSH_KEYGEN "/usr/bin/ssh-keygen"
#define PASS "wharf-pass-1"
#define BIN_MAX 8192

static char dir[512];

/* ---- files and commands ----------------------------------------------------- */

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

/* argv[0] with its output in DIR/cmd.log and stdin from in (or /dev/null);
 * its exit status. */
static int run(const char *const argv[], const char *in)
{
    char log[600];
    path_of(log, sizeof(log), "cmd.log");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int i = open(in != NULL ? in : "/dev/null", O_RDONLY);
        int o = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (i < 0 || o < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 ||
            dup2(o, 2) < 0)
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void must_run(const char *const argv[])
{
    if (run(argv, NULL) != 0) {
        char log[600];
        path_of(log, sizeof(log), "cmd.log");
        fail_msg("%s %s failed (see %s)", argv[0], argv[1], log);
    }
}

/* ssh-keygen -t type [-b bits] -N pass -C '' -f DIR/name */
static void keygen(const char *name, const char *type, const char *bits,
                   const char *pass)
{
    char p[600];
    path_of(p, sizeof(p), name);
    if (bits != NULL) {
        const char *argv[] = { SSH_KEYGEN, "-q", "-t", type, "-b", bits, "-N",
                               pass, "-C", "", "-f", p, NULL };
        must_run(argv);
    } else {
        const char *argv[] = { SSH_KEYGEN, "-q", "-t", type, "-N", pass, "-C",
                               "", "-f", p, NULL };
        must_run(argv);
    }
}

static unsigned char *slurp(const char *name, size_t *n)
{
    char p[600];
    path_of(p, sizeof(p), name);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    unsigned char *buf = malloc(65536 + 1);
    assert_non_null(buf);
    *n = fread(buf, 1, 65536, f);
    buf[*n] = 0;
    fclose(f);
    return buf;
}

static void spit(const char *name, const void *data, size_t n)
{
    char p[600];
    path_of(p, sizeof(p), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

/* A copy of from as to, rewritten by ssh-keygen -p in format fmt (PEM,
 * PKCS8 or RFC4716 = OpenSSH) with passphrase newpass. */
static void convert(const char *from, const char *to, const char *fmt,
                    const char *oldpass, const char *newpass)
{
    size_t n;
    unsigned char *t = slurp(from, &n);
    spit(to, t, n);
    free(t);
    char p[600];
    path_of(p, sizeof(p), to);
    const char *argv[] = { SSH_KEYGEN, "-q", "-p", "-P", oldpass, "-N",
                           newpass, "-m", fmt, "-f", p, NULL };
    must_run(argv);
}

static unsigned char *b64_decode(const char *s, size_t len, size_t *n)
{
    unsigned char *out = malloc(len + 4);
    assert_non_null(out);
    char *clean = malloc(len + 1);
    assert_non_null(clean);
    size_t c = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] != '\n' && s[i] != '\r')
            clean[c++] = s[i];
    int r = EVP_DecodeBlock(out, (unsigned char *)clean, (int)c);
    assert_true(r >= 0);
    size_t pad = c >= 1 && clean[c - 1] == '=' ? (c >= 2 &&
                 clean[c - 2] == '=' ? 2 : 1) : 0;
    *n = (size_t)r - pad;
    free(clean);
    return out;
}

/* base64 in lines of 70 (as ssh-keygen writes), NUL-terminated. */
static char *b64_lines(const unsigned char *p, size_t n)
{
    size_t enc = 4 * ((n + 2) / 3);
    unsigned char *flat = malloc(enc + 1);
    char *out = malloc(enc + enc / 70 + 2);
    assert_true(flat != NULL && out != NULL);
    EVP_EncodeBlock(flat, p, (int)n);
    size_t o = 0;
    for (size_t i = 0; i < enc; i++) {
        out[o++] = (char)flat[i];
        if (i % 70 == 69 || i + 1 == enc)
            out[o++] = '\n';
    }
    out[o] = 0;
    free(flat);
    return out;
}

/* The .pub file's blob (its second field, base64-decoded). */
static unsigned char *pub_blob(const char *name, size_t *n)
{
    char pub[300];
    size_t len;
    snprintf(pub, sizeof(pub), "%s.pub", name);
    unsigned char *t = slurp(pub, &len);
    char *b = strchr((char *)t, ' ');
    assert_non_null(b);
    b++;
    size_t bl = strcspn(b, " \n");
    unsigned char *blob = b64_decode(b, bl, n);
    free(t);
    return blob;
}

/* ---- openssh-key-v1 binaries, to corrupt them ------------------------------ */

static unsigned char *openssh_bin(const char *name, size_t *n)
{
    size_t len;
    unsigned char *t = slurp(name, &len);
    char *b = strchr((char *)t, '\n');
    char *e = strstr((char *)t, "-----END");
    assert_true(b != NULL && e != NULL);
    unsigned char *bin = b64_decode(b + 1, (size_t)(e - b - 1), n);
    free(t);
    return bin;
}

static char *openssh_text(const unsigned char *bin, size_t n, size_t *len)
{
    char *body = b64_lines(bin, n);
    size_t bl = strlen(body);
    char *t = malloc(bl + 128);
    assert_non_null(t);
    *len = (size_t)snprintf(t, bl + 128, "-----BEGIN OPENSSH PRIVATE KEY-----"
                            "\n%s-----END OPENSSH PRIVATE KEY-----\n", body);
    free(body);
    return t;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Offsets in an openssh-key-v1 binary: the outer public key string and
 * the private section string (their length fields). */
struct layout {
    size_t pub, sec, end;
};

static struct layout openssh_layout(const unsigned char *bin, size_t n)
{
    size_t o = 15;                          /* "openssh-key-v1\0" */
    for (int i = 0; i < 3; i++)             /* cipher, kdf, kdf options */
        o += 4 + be32(bin + o);
    o += 4;                                 /* number of keys */
    struct layout l;
    l.pub = o;
    o += 4 + be32(bin + o);
    l.sec = o;
    o += 4 + be32(bin + o);
    l.end = o;
    assert_int_equal(l.end, n);
    return l;
}

/* ---- parsing and checking refusals ----------------------------------------- */

static int contains(const char *hay, size_t hn, const char *needle, size_t nn)
{
    return nn <= hn && memmem(hay, hn, needle, nn) != NULL;
}

static void hex(const unsigned char *p, size_t n, char *out, int upper)
{
    const char *d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
}

/* msg is printable, and no 12 bytes of it are in the key text, no 8 in
 * the hex of key (the decoded binary, or the DER private key). */
static void assert_no_key_bytes(const char *msg, const void *text, size_t tn,
                                const unsigned char *key, size_t kn)
{
    size_t mn = strlen(msg);
    assert_true(mn > 0);
    for (size_t i = 0; i < mn; i++)
        if (msg[i] < 0x20 || msg[i] > 0x7e)
            fail_msg("unprintable byte in error: %s", msg);
    for (size_t i = 0; i + 12 <= mn; i++)
        if (contains(text, tn, msg + i, 12))
            fail_msg("error quotes the key text: %s", msg);
    if (key == NULL)
        return;
    char *hx = malloc(2 * kn + 1);
    assert_non_null(hx);
    for (int upper = 0; upper < 2; upper++) {
        hex(key, kn, hx, upper);
        for (size_t i = 0; i + 8 <= mn; i++)
            if (contains(hx, 2 * kn, msg + i, 8))
                fail_msg("error quotes key bytes in hex: %s", msg);
    }
    free(hx);
}

/* sshkey_parse refuses text, with want in its message (if not NULL) and
 * no key bytes (key: the key's binary, may be NULL). */
static void refused(const void *text, size_t n, const char *pass,
                    const char *want, const unsigned char *key, size_t kn)
{
    struct secret *s = pass != NULL ? secret_from(pass, strlen(pass)) : NULL;
    struct error err = {0};
    EVP_PKEY *k = (EVP_PKEY *)1;
    int rc = sshkey_parse(text, n, s, &k, &err);
    secret_free(s);
    if (rc == 0) {
        EVP_PKEY_free(k);
        fail_msg("accepted, expected a refusal (%s)", want ? want : "any");
    }
    assert_int_equal(rc, -1);
    assert_null(k);
    if (want != NULL && strstr(err.msg, want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, want);
    assert_no_key_bytes(err.msg, text, n, key, kn);
}

static EVP_PKEY *parse_text(const void *text, size_t n, const char *pass)
{
    struct secret *s = pass != NULL ? secret_from(pass, strlen(pass)) : NULL;
    struct error err = {0};
    EVP_PKEY *k = NULL;
    if (sshkey_parse(text, n, s, &k, &err) != 0)
        fail_msg("sshkey_parse: %s", err.msg);
    secret_free(s);
    assert_non_null(k);
    return k;
}

static EVP_PKEY *parse_file(const char *name, const char *pass)
{
    size_t n;
    unsigned char *t = slurp(name, &n);
    EVP_PKEY *k = parse_text(t, n, pass);
    free(t);
    return k;
}

/* ---- an independent reader of SSH blobs (this test's own) ------------------ */

struct trd {
    const unsigned char *p;
    size_t n;
};

static int t_string(struct trd *r, const unsigned char **s, size_t *n)
{
    if (r->n < 4 || be32(r->p) > r->n - 4)
        return -1;
    *n = be32(r->p);
    *s = r->p + 4;
    r->p += 4 + *n;
    r->n -= 4 + *n;
    return 0;
}

static int t_is(const unsigned char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* A canonical mpint (RFC 4251 5: no needless 0x00, non-negative). */
static BIGNUM *t_mpint(struct trd *r)
{
    const unsigned char *s;
    size_t n;
    assert_int_equal(t_string(r, &s, &n), 0);
    if (n > 0) {
        assert_true((s[0] & 0x80) == 0);
        if (s[0] == 0)
            assert_true(n > 1 && (s[1] & 0x80) != 0);
    }
    BIGNUM *bn = BN_bin2bn(s, (int)n, NULL);
    assert_non_null(bn);
    return bn;
}

static EVP_PKEY *t_fromdata(const char *alg, OSSL_PARAM_BLD *b)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    EVP_PKEY *k = NULL;
    assert_true(params != NULL && ctx != NULL);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params),
                     1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    return k;
}

static const char *group_of(const unsigned char *c, size_t n)
{
    if (t_is(c, n, "nistp256"))
        return "P-256";
    if (t_is(c, n, "nistp384"))
        return "P-384";
    return t_is(c, n, "nistp521") ? "P-521" : NULL;
}

/* A public EVP_PKEY from an SSH public blob (as in a .pub file). */
static EVP_PKEY *key_from_blob(const unsigned char *blob, size_t n)
{
    struct trd r = { blob, n };
    const unsigned char *type, *a, *b;
    size_t tn, an, bn;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *k;
    assert_int_equal(t_string(&r, &type, &tn), 0);
    if (t_is(type, tn, "ssh-ed25519")) {
        assert_int_equal(t_string(&r, &a, &an), 0);
        assert_int_equal(an, 32);
        OSSL_PARAM_BLD_free(bld);
        k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, a, an);
    } else if (t_is(type, tn, "ssh-rsa")) {
        BIGNUM *e = t_mpint(&r), *m = t_mpint(&r);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, m);
        k = t_fromdata("RSA", bld);
        BN_free(e);
        BN_free(m);
    } else {
        assert_int_equal(t_string(&r, &a, &an), 0);
        assert_int_equal(t_string(&r, &b, &bn), 0);
        assert_non_null(group_of(a, an));
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        group_of(a, an), 0);
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, b, bn);
        k = t_fromdata("EC", bld);
    }
    assert_int_equal(r.n, 0);
    assert_non_null(k);
    return k;
}

static const EVP_MD *md_of(const char *alg)
{
    if (strcmp(alg, "ssh-rsa") == 0)
        return EVP_sha1();
    if (strcmp(alg, "rsa-sha2-256") == 0 ||
        strcmp(alg, "ecdsa-sha2-nistp256") == 0)
        return EVP_sha256();
    if (strcmp(alg, "ecdsa-sha2-nistp384") == 0)
        return EVP_sha384();
    return strcmp(alg, "ssh-ed25519") == 0 ? NULL : EVP_sha512();
}

/* The DER ECDSA-Sig-Value of an SSH ECDSA signature blob. */
static unsigned char *ecdsa_der(const unsigned char *blob, size_t n,
                                size_t *dn)
{
    struct trd r = { blob, n };
    BIGNUM *rr = t_mpint(&r), *s = t_mpint(&r);
    assert_int_equal(r.n, 0);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    assert_non_null(sig);
    assert_int_equal(ECDSA_SIG_set0(sig, rr, s), 1);
    unsigned char *der = NULL;
    int len = i2d_ECDSA_SIG(sig, &der);
    assert_true(len > 0);
    ECDSA_SIG_free(sig);
    *dn = (size_t)len;
    return der;
}

/* 1 when sig (string alg + string blob) is alg's valid signature of data
 * by the public key pub (an SSH blob). */
static int verifies(const unsigned char *pub, size_t pubn, const char *alg,
                    const unsigned char *data, size_t n,
                    const unsigned char *sig, size_t sn)
{
    struct trd r = { sig, sn };
    const unsigned char *name, *blob;
    size_t nn, bn;
    assert_int_equal(t_string(&r, &name, &nn), 0);
    assert_int_equal(t_string(&r, &blob, &bn), 0);
    assert_int_equal(r.n, 0);
    if (!t_is(name, nn, alg))
        fail_msg("signature algorithm %.*s, expected %s", (int)nn, name, alg);
    EVP_PKEY *k = key_from_blob(pub, pubn);
    unsigned char *der = NULL;
    if (strncmp(alg, "ecdsa-", 6) == 0) {
        der = ecdsa_der(blob, bn, &bn);
        blob = der;
    } else if (strcmp(alg, "ssh-ed25519") == 0) {
        assert_int_equal(bn, 64);
    } else {                                /* RSA: the modulus' length */
        assert_int_equal(bn, (size_t)EVP_PKEY_get_size(k));
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, md_of(alg), NULL, k),
                     1);
    int ok = EVP_DigestVerify(ctx, blob, bn, data, n) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    OPENSSL_free(der);
    return ok;
}

/* ---- SSHSIG (OpenSSH PROTOCOL.sshsig), for ssh-keygen -Y verify ----------- */

struct tbuf {
    unsigned char b[BIN_MAX];
    size_t n;
};

static void tb_bytes(struct tbuf *t, const void *p, size_t n)
{
    assert_true(n <= sizeof(t->b) - t->n);
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

static void tb_string(struct tbuf *t, const void *p, size_t n)
{
    unsigned char l[4];
    put_be32(l, (uint32_t)n);
    tb_bytes(t, l, 4);
    tb_bytes(t, p, n);
}

static void tb_cstring(struct tbuf *t, const char *s)
{
    tb_string(t, s, strlen(s));
}

/* The armored SSHSIG of DIR/msg by k (its signature from sshkey_sign with
 * flags) written to DIR/msg.sig; flip: a byte of the signature changed. */
static void sshsig_write(EVP_PKEY *k, uint32_t flags, int flip)
{
    static const char msg[] = "a file Wharf delivers over SFTP\n";
    unsigned char h[64], *sig, *pub;
    size_t sn, pn;
    struct error err = {0};
    spit("msg", msg, sizeof(msg) - 1);
    assert_int_equal(EVP_Digest(msg, sizeof(msg) - 1, h, NULL, EVP_sha512(),
                                NULL), 1);
    struct tbuf tbs = {0}, w = {0};
    tb_bytes(&tbs, "SSHSIG", 6);
    tb_cstring(&tbs, "file");
    tb_cstring(&tbs, "");
    tb_cstring(&tbs, "sha512");
    tb_string(&tbs, h, sizeof(h));
    assert_int_equal(sshkey_sign(k, flags, tbs.b, tbs.n, &sig, &sn, &err), 0);
    assert_int_equal(sshkey_public_blob(k, &pub, &pn, &err), 0);
    if (flip)
        sig[sn - 1] ^= 0x01;
    tb_bytes(&w, "SSHSIG\0\0\0\1", 10);
    tb_string(&w, pub, pn);
    tb_cstring(&w, "file");
    tb_cstring(&w, "");
    tb_cstring(&w, "sha512");
    tb_string(&w, sig, sn);
    free(sig);
    free(pub);
    char *body = b64_lines(w.b, w.n);
    char text[BIN_MAX * 2];
    int tn = snprintf(text, sizeof(text), "-----BEGIN SSH SIGNATURE-----\n%s"
                      "-----END SSH SIGNATURE-----\n", body);
    free(body);
    spit("msg.sig", text, (size_t)tn);
}

/* ssh-keygen -Y verify of DIR/msg.sig against name.pub as allowed signer:
 * its exit status. */
static int sshsig_verify(const char *name)
{
    char pub[300], allowed[600], sig[600], msg[600], line[4096];
    size_t n;
    snprintf(pub, sizeof(pub), "%s.pub", name);
    unsigned char *t = slurp(pub, &n);
    char *sp = strchr((char *)t, ' ');
    assert_non_null(sp);
    size_t keylen = (size_t)(sp - (char *)t) + 1 + strcspn(sp + 1, " \n");
    int ln = snprintf(line, sizeof(line), "wharf@test %.*s\n", (int)keylen,
                      (char *)t);
    free(t);
    spit("allowed_signers", line, (size_t)ln);
    path_of(allowed, sizeof(allowed), "allowed_signers");
    path_of(sig, sizeof(sig), "msg.sig");
    path_of(msg, sizeof(msg), "msg");
    const char *argv[] = { SSH_KEYGEN, "-Y", "verify", "-f", allowed, "-I",
                           "wharf@test", "-n", "file", "-s", sig, NULL };
    return run(argv, msg);
}

/* ---- the common check of a good key ----------------------------------------- */

/* name parses (with pass), its blob is pub_name's .pub blob, and a
 * signature with flags verifies as alg (OpenSSL, and ssh-keygen when
 * sshsig). */
static void check_key(const char *name, const char *pass, const char *pub_name,
                      uint32_t flags, const char *alg, int sshsig)
{
    static const unsigned char data[] = "SSH_MSG_USERAUTH_REQUEST data";
    struct error err = {0};
    unsigned char *blob, *sig;
    size_t bn, pn, sn;
    EVP_PKEY *k = parse_file(name, pass);
    unsigned char *pub = pub_blob(pub_name, &pn);
    assert_int_equal(sshkey_public_blob(k, &blob, &bn, &err), 0);
    assert_int_equal(bn, pn);
    assert_memory_equal(blob, pub, pn);
    assert_int_equal(sshkey_sign(k, flags, data, sizeof(data), &sig, &sn,
                                 &err), 0);
    assert_true(verifies(pub, pn, alg, data, sizeof(data), sig, sn));
    sig[sn - 1] ^= 0x40;                    /* the check can fail */
    assert_false(verifies(pub, pn, alg, data, sizeof(data), sig, sn));
    if (sshsig) {
        sshsig_write(k, flags, 0);
        assert_int_equal(sshsig_verify(pub_name), 0);
    }
    free(blob);
    free(sig);
    free(pub);
    EVP_PKEY_free(k);
}

/* ---- fixtures ------------------------------------------------------------------ */

/* A P-256 key ssh-keygen made for this test on 2026-12-07, kept because
 * it failed the every-byte test (a key like it comes about one run in
 * 512): its scalar is 31 bytes, so its private section ends in one byte of
 * padding, which the comment can take (comment_takes_padding). A throwaway
 * key, used nowhere else. */
static const char KEPT_EC256_PAD1[] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS\n"
    "1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQQb0oO4y+mqn3N3TacfwF7Mi5AILVG2\n"
    "bhuvo7QL1Yd0IvMI3mS+d7HPvMPpsUVzDeHDfUL4bwLHOggwnMNyFjyxAAAAmM60lFXOtJ\n"
    "RVAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBvSg7jL6aqfc3dN\n"
    "px/AXsyLkAgtUbZuG6+jtAvVh3Qi8wjeZL53sc+8w+mxRXMN4cN9QvhvAsc6CDCcw3IWPL\n"
    "EAAAAfAbdcvEXY2uDlnjyCuYlaH4acAnisCkygHG0lZ3yiQgAAAAAB\n"
    "-----END OPENSSH PRIVATE KEY-----\n";

static int keys_setup(void **state)
{
    (void)state;
    test_tmpdir(dir, sizeof(dir));
    keygen("ed25519", "ed25519", NULL, "");
    keygen("ed25519_b", "ed25519", NULL, "");
    keygen("rsa", "rsa", "3072", "");
    keygen("ec256", "ecdsa", "256", "");
    keygen("ec256_b", "ecdsa", "256", "");
    keygen("ec384", "ecdsa", "384", "");
    keygen("ec521", "ecdsa", "521", "");
    keygen("rsa1024", "rsa", "1024", "");
    keygen("ed25519_enc", "ed25519", NULL, PASS);
    keygen("ec256_enc", "ecdsa", "256", PASS);
    spit("ec256_pad1", KEPT_EC256_PAD1, strlen(KEPT_EC256_PAD1));
    return 0;
}

static int keys_teardown(void **state)
{
    (void)state;
    test_rmtree(dir);
    return 0;
}

/* ---- good keys ---------------------------------------------------------------- */

static void test_r15_sshkey_openssh_ed25519_signs_what_openssh_verifies(
    void **state)
{
    (void)state;
    check_key("ed25519", NULL, "ed25519", 0, "ssh-ed25519", 1);
    /* the flags are RSA's: ignored for Ed25519 */
    check_key("ed25519", NULL, "ed25519", SSHKEY_RSA_SHA2_512, "ssh-ed25519",
              0);
    /* negative control: ssh-keygen refuses a changed signature */
    EVP_PKEY *k = parse_file("ed25519", NULL);
    sshsig_write(k, 0, 1);
    assert_int_not_equal(sshsig_verify("ed25519"), 0);
    EVP_PKEY_free(k);
}

static void test_r15_sshkey_openssh_rsa_signs_each_algorithm(void **state)
{
    (void)state;
    check_key("rsa", NULL, "rsa", 0, "ssh-rsa", 0);  /* SSHSIG: no SHA-1 */
    check_key("rsa", NULL, "rsa", SSHKEY_RSA_SHA2_256, "rsa-sha2-256", 1);
    check_key("rsa", NULL, "rsa", SSHKEY_RSA_SHA2_512, "rsa-sha2-512", 1);
    check_key("rsa", NULL, "rsa", SSHKEY_RSA_SHA2_256 | SSHKEY_RSA_SHA2_512,
              "rsa-sha2-512", 0);
}

static void test_r15_sshkey_openssh_ecdsa_each_curve_signs_what_openssh_verifies(
    void **state)
{
    (void)state;
    check_key("ec256", NULL, "ec256", 0, "ecdsa-sha2-nistp256", 1);
    check_key("ec384", NULL, "ec384", 0, "ecdsa-sha2-nistp384", 1);
    check_key("ec521", NULL, "ec521", SSHKEY_RSA_SHA2_256,
              "ecdsa-sha2-nistp521", 1);
}

/* r and s of many signatures, so both a top bit set (0x00 first) and a
 * short number occur: each one canonical (t_mpint checks) and verifying. */
static void test_r15_sshkey_ecdsa_signature_mpints_are_canonical(void **state)
{
    (void)state;
    const char *names[] = { "ec256", "ec521" };
    const char *algs[] = { "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp521" };
    for (int i = 0; i < 2; i++) {
        EVP_PKEY *k = parse_file(names[i], NULL);
        size_t pn;
        unsigned char *pub = pub_blob(names[i], &pn);
        int lead = 0;
        for (int j = 0; j < 48; j++) {
            unsigned char data[4] = { (unsigned char)j }, *sig;
            size_t sn;
            struct error err = {0};
            assert_int_equal(sshkey_sign(k, 0, data, sizeof(data), &sig, &sn,
                                         &err), 0);
            assert_true(verifies(pub, pn, algs[i], data, sizeof(data), sig,
                                 sn));
            /* r's length: after the name and the blob's length */
            size_t off = 4 + strlen(algs[i]) + 4;
            lead += be32(sig + off) > 0 && sig[off + 4] == 0;
            free(sig);
        }
        if (i == 0)
            assert_true(lead > 0);  /* 48 tries: ~2^-48 to see none */
        free(pub);
        EVP_PKEY_free(k);
    }
}

static void test_r15_sshkey_pem_and_pkcs8_forms_give_the_same_key(void **state)
{
    (void)state;
    convert("rsa", "rsa_pem", "PEM", "", "");
    convert("rsa", "rsa_p8", "PKCS8", "", "");
    convert("ec256", "ec256_pem", "PEM", "", "");
    convert("ec384", "ec384_p8", "PKCS8", "", "");
    convert("ec521", "ec521_pem", "PEM", "", "");
    size_t n;
    unsigned char *t = slurp("rsa_pem", &n);
    assert_non_null(strstr((char *)t, "BEGIN RSA PRIVATE KEY"));
    free(t);
    t = slurp("ec256_pem", &n);
    assert_non_null(strstr((char *)t, "BEGIN EC PRIVATE KEY"));
    free(t);
    t = slurp("rsa_p8", &n);
    assert_non_null(strstr((char *)t, "BEGIN PRIVATE KEY"));
    free(t);
    check_key("rsa_pem", NULL, "rsa", SSHKEY_RSA_SHA2_256, "rsa-sha2-256", 1);
    check_key("rsa_p8", NULL, "rsa", SSHKEY_RSA_SHA2_512, "rsa-sha2-512", 0);
    check_key("ec256_pem", NULL, "ec256", 0, "ecdsa-sha2-nistp256", 1);
    check_key("ec384_p8", NULL, "ec384", 0, "ecdsa-sha2-nistp384", 0);
    check_key("ec521_pem", NULL, "ec521", 0, "ecdsa-sha2-nistp521", 0);
}

/* ssh-keygen writes Ed25519 only as OpenSSH: a PKCS#8 one from OpenSSL,
 * its blob built here from its raw public key. */
static void test_r15_sshkey_pkcs8_ed25519(void **state)
{
    (void)state;
    EVP_PKEY *gen = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(gen);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, gen, NULL, NULL, 0, NULL,
                                              NULL), 1);
    char *pem;
    long pn = BIO_get_mem_data(b, &pem);
    EVP_PKEY *k = parse_text(pem, (size_t)pn, NULL);
    unsigned char raw[32], *blob, *sig;
    size_t rn = sizeof(raw), bn, sn;
    struct error err = {0};
    assert_int_equal(EVP_PKEY_get_raw_public_key(gen, raw, &rn), 1);
    struct tbuf want = {0};
    tb_cstring(&want, "ssh-ed25519");
    tb_string(&want, raw, rn);
    assert_int_equal(sshkey_public_blob(k, &blob, &bn, &err), 0);
    assert_int_equal(bn, want.n);
    assert_memory_equal(blob, want.b, bn);
    assert_int_equal(sshkey_sign(k, 0, (const unsigned char *)"x", 1, &sig,
                                 &sn, &err), 0);
    assert_true(verifies(want.b, want.n, "ssh-ed25519",
                         (const unsigned char *)"x", 1, sig, sn));
    free(blob);
    free(sig);
    EVP_PKEY_free(k);
    BIO_free(b);
    EVP_PKEY_free(gen);
}

/* ---- passphrases ------------------------------------------------------------- */

static void test_r15_sshkey_passphrase_opens_pkcs8_and_pem_only_with_it(
    void **state)
{
    (void)state;
    convert("ec256", "ec256_p8_pass", "PKCS8", "", PASS);
    convert("rsa", "rsa_pem_pass", "PEM", "", PASS);
    size_t n;
    unsigned char *t = slurp("ec256_p8_pass", &n);
    assert_non_null(strstr((char *)t, "BEGIN ENCRYPTED PRIVATE KEY"));
    refused(t, n, NULL, "encrypted: give its passphrase", NULL, 0);
    refused(t, n, "wrong-pass", "wrong passphrase", NULL, 0);
    refused(t, n, "", "wrong passphrase", NULL, 0);
    free(t);
    t = slurp("rsa_pem_pass", &n);
    assert_non_null(strstr((char *)t, "Proc-Type: 4,ENCRYPTED"));
    refused(t, n, NULL, "encrypted: give its passphrase", NULL, 0);
    refused(t, n, "wrong-pass", "wrong passphrase", NULL, 0);
    free(t);
    check_key("ec256_p8_pass", PASS, "ec256", 0, "ecdsa-sha2-nistp256", 1);
    check_key("rsa_pem_pass", PASS, "rsa", SSHKEY_RSA_SHA2_512,
              "rsa-sha2-512", 0);
    /* a passphrase given for a key without one does no harm */
    check_key("ec256", "unused", "ec256", 0, "ecdsa-sha2-nistp256", 0);
}

static void test_r15_sshkey_encrypted_openssh_refused_with_a_hint_that_works(
    void **state)
{
    (void)state;
    size_t n;
    unsigned char *t = slurp("ec256_enc", &n);
    refused(t, n, PASS, "ssh-keygen -p -m PKCS8 -f KEY", NULL, 0);
    refused(t, n, NULL, "encrypted with a passphrase", NULL, 0);
    free(t);
    t = slurp("ed25519_enc", &n);
    refused(t, n, PASS, "ssh-keygen -p -N '' -f KEY", NULL, 0);
    free(t);
    /* following the hints gives keys Wharf reads */
    convert("ec256_enc", "ec256_enc_p8", "PKCS8", PASS, PASS);
    check_key("ec256_enc_p8", PASS, "ec256_enc", 0, "ecdsa-sha2-nistp256", 1);
    convert("ed25519_enc", "ed25519_dec", "RFC4716", PASS, "");
    check_key("ed25519_dec", NULL, "ed25519_enc", 0, "ssh-ed25519", 1);
}

/* ---- refusals ------------------------------------------------------------------ */

static void test_r15_sshkey_rsa_1024_refused(void **state)
{
    (void)state;
    size_t n, bn;
    unsigned char *t = slurp("rsa1024", &n);
    unsigned char *bin = openssh_bin("rsa1024", &bn);
    refused(t, n, NULL, "1024 bits is too weak", bin, bn);
    free(t);
    free(bin);
    convert("rsa1024", "rsa1024_pem", "PEM", "", "");
    t = slurp("rsa1024_pem", &n);
    refused(t, n, NULL, "1024 bits is too weak", NULL, 0);
    free(t);
}

/* Every cut of the text before its END line ends, and every cut of the
 * binary (armored again), is refused. */
static void test_r15_sshkey_truncated_files_refused(void **state)
{
    (void)state;
    const char *names[] = { "ed25519", "ec384", "rsa" };
    for (int i = 0; i < 3; i++) {
        size_t n, bn, tn;
        unsigned char *t = slurp(names[i], &n);
        unsigned char *bin = openssh_bin(names[i], &bn);
        size_t end = (size_t)(strstr((char *)t, "-----END") - (char *)t) +
                     strlen("-----END OPENSSH PRIVATE KEY-----");
        for (size_t cut = 0; cut < end; cut += i == 2 ? 7 : 1)
            refused(t, cut, NULL, NULL, bin, bn);
        for (size_t cut = 0; cut < bn; cut += i == 2 ? 5 : 1) {
            char *c = openssh_text(bin, cut, &tn);
            refused(c, tn, NULL, NULL, bin, bn);
            free(c);
        }
        free(t);
        free(bin);
    }
}

/* With an empty comment and one byte of padding, the comment's length 0
 * -> 1 makes that byte (1) the comment and leaves no padding. The format
 * allows it (OpenSSH pads the private section to a multiple of 8 with 1,
 * 2, 3, ..., with nothing when it is aligned): the file is the same key
 * with the comment "\001", as `ssh-keygen -y` reads it too. The offset of
 * that length byte, or SIZE_MAX when the key's layout has no such byte. */
static size_t comment_takes_padding(const unsigned char *bin, struct layout l)
{
    if (bin[l.end - 1] != 1 || be32(bin + l.end - 5) != 0)
        return SIZE_MAX;
    return l.end - 2;
}

/* text parses as the key whose binary is bin (its public blob is bin's
 * outer public key), and `ssh-keygen -y` reads the same from it. */
static void same_key(const char *text, size_t tn, const unsigned char *bin,
                     struct layout l)
{
    EVP_PKEY *k = parse_text(text, tn, NULL);
    unsigned char *blob = NULL;
    size_t n = 0;
    struct error err = {0};
    assert_int_equal(sshkey_public_blob(k, &blob, &n, &err), 0);
    assert_int_equal(n, be32(bin + l.pub));
    assert_memory_equal(blob, bin + l.pub + 4, n);
    free(blob);
    EVP_PKEY_free(k);
    char p[600];
    path_of(p, sizeof(p), "comment_took_padding");
    spit("comment_took_padding", text, tn);
    const char *argv[] = { SSH_KEYGEN, "-y", "-f", p, NULL };
    must_run(argv);
    size_t on = 0;
    unsigned char *out = slurp("cmd.log", &on);
    char *b64 = strchr((char *)out, ' ');
    assert_non_null(b64);
    unsigned char *theirs = b64_decode(b64 + 1, strcspn(b64 + 1, " \n"), &n);
    assert_int_equal(n, be32(bin + l.pub));
    assert_memory_equal(theirs, bin + l.pub + 4, n);
    free(theirs);
    free(out);
}

/* Each byte of the binary changed in turn (its lowest and highest bit):
 * refused, every one. The keys have an empty comment, so no byte is free
 * to change but the comment's length where the comment can take the
 * padding: that one change must give the same key. */
static void every_byte_refused(const char *name)
{
    size_t bn, tn;
    unsigned char *bin = openssh_bin(name, &bn);
    struct layout l = openssh_layout(bin, bn);
    size_t free_len = comment_takes_padding(bin, l);
    for (size_t j = 0; j < bn; j++) {
        for (int x = 0; x < 2; x++) {
            unsigned char mask = x == 0 ? 0x01 : 0x80;
            bin[j] ^= mask;
            char *c = openssh_text(bin, bn, &tn);
            bin[j] ^= mask;
            if (j == free_len && mask == 0x01)
                same_key(c, tn, bin, l);
            else
                refused(c, tn, NULL, NULL, bin, bn);
            free(c);
        }
    }
    free(bin);
}

static void test_r15_sshkey_every_corrupted_byte_refused_without_quoting_key_bytes(
    void **state)
{
    (void)state;
    /* ec256_pad1: the kept key whose comment can take its padding */
    const char *names[] = { "ed25519", "ec256", "ec256_pad1" };
    for (int i = 0; i < 3; i++)
        every_byte_refused(names[i]);
    size_t kn = 0;
    unsigned char *kept = openssh_bin("ec256_pad1", &kn);
    assert_int_not_equal(comment_takes_padding(kept, openssh_layout(kept, kn)),
                         SIZE_MAX);
    free(kept);
    /* RSA: a byte of each number (the pairwise check makes each slow) */
    size_t bn, tn;
    unsigned char *bin = openssh_bin("rsa", &bn);
    struct layout l = openssh_layout(bin, bn);
    size_t at[] = { l.pub + 4 + 4 + 7 + 4 + 3 + 4 + 100,    /* outer n */
                    l.sec + 4 + 2,                           /* check1 */
                    l.sec + 4 + 8 + 4 + 7 + 4 + 1 + 200,     /* n */
                    l.sec + 4 + 8 + 4 + 7 + 4 + 385 + 4 + 2, /* e */
                    l.sec + 4 + 8 + 4 + 7 + 4 + 385 + 7 + 4 + 100, /* d */
                    bn - 500, bn - 300, bn - 100 };          /* iqmp, p, q */
    for (size_t j = 0; j < sizeof(at) / sizeof(at[0]); j++) {
        bin[at[j]] ^= 0x10;
        char *c = openssh_text(bin, bn, &tn);
        bin[at[j]] ^= 0x10;
        refused(c, tn, NULL, NULL, bin, bn);
        free(c);
    }
    free(bin);
}

static void test_r15_sshkey_check_numbers_must_be_equal(void **state)
{
    (void)state;
    size_t bn, tn;
    unsigned char *bin = openssh_bin("ed25519", &bn);
    struct layout l = openssh_layout(bin, bn);
    char *good = openssh_text(bin, bn, &tn);
    EVP_PKEY_free(parse_text(good, tn, NULL));  /* re-armoring is faithful */
    free(good);
    put_be32(bin + l.sec + 8, be32(bin + l.sec + 4) + 1);
    char *c = openssh_text(bin, bn, &tn);
    refused(c, tn, NULL, "check numbers differ", bin, bn);
    free(c);
    free(bin);
}

/* The outer public key of one key with the private section of another of
 * the same type and size. */
static void test_r15_sshkey_private_key_must_match_the_public_key(void **state)
{
    (void)state;
    const char *pairs[2][2] = { { "ed25519", "ed25519_b" },
                                { "ec256", "ec256_b" } };
    for (int i = 0; i < 2; i++) {
        size_t an, bn, tn;
        unsigned char *a = openssh_bin(pairs[i][0], &an);
        unsigned char *b = openssh_bin(pairs[i][1], &bn);
        struct layout la = openssh_layout(a, an), lb = openssh_layout(b, bn);
        assert_int_equal(la.sec, lb.sec);
        memcpy(a + la.pub, b + lb.pub, lb.sec - lb.pub);
        char *c = openssh_text(a, an, &tn);
        refused(c, tn, NULL, "does not match its public key", a, an);
        free(c);
        free(a);
        free(b);
    }
}

static void test_r15_sshkey_trailing_bytes_refused(void **state)
{
    (void)state;
    size_t bn, tn, n;
    unsigned char *bin = openssh_bin("ed25519", &bn);
    struct layout l = openssh_layout(bin, bn);
    unsigned char *big = calloc(1, bn + 16);
    assert_non_null(big);
    memcpy(big, bin, bn);
    /* bytes after the private section */
    char *c = openssh_text(big, bn + 8, &tn);
    refused(c, tn, NULL, "bytes follow its private section", bin, bn);
    free(c);
    /* a whole block of padding more inside it */
    uint32_t sn = be32(big + l.sec);
    put_be32(big + l.sec, sn + 8);
    for (size_t i = 0; i < 8; i++)
        big[bn + i] = (unsigned char)(big[bn - 1] + 1 + i);
    c = openssh_text(big, bn + 8, &tn);
    refused(c, tn, NULL, "bytes follow its private key", bin, bn);
    free(c);
    /* no padding: the section is not whole blocks (5 pad bytes here) */
    assert_int_equal(be32(bin + l.sec) % 8, 0);
    assert_int_equal(bin[bn - 1], 5);
    put_be32(bin + l.sec, be32(bin + l.sec) - 5);
    c = openssh_text(bin, bn - 5, &tn);
    put_be32(bin + l.sec, be32(bin + l.sec) + 5);
    refused(c, tn, NULL, "not whole blocks", bin, bn);
    free(c);
    /* text after the END line */
    unsigned char *t = slurp("ed25519", &n);
    unsigned char *more = malloc(n + 16);
    assert_non_null(more);
    memcpy(more, t, n);
    memcpy(more + n, "extra\n", 6);
    refused(more, n + 6, NULL, "text surrounds them", bin, bn);
    /* whitespace around is fine */
    memcpy(more, "\n  ", 3);
    memcpy(more + 3, t, n);
    memcpy(more + 3 + n, "\r\n\n", 3);
    EVP_PKEY_free(parse_text(more, n + 6, NULL));
    free(more);
    free(t);
    free(big);
    free(bin);
}

static void test_r15_sshkey_not_a_key_refused(void **state)
{
    (void)state;
    static const char *texts[] = {
        "",
        "   \n",
        "hello",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn*zaC1rZXktdjEA\n"
        "-----END OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA=A\n"
        "-----END OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        refused(texts[i], strlen(texts[i]), NULL, NULL, NULL, 0);
    /* the .pub file is not a private key */
    size_t n;
    unsigned char *t = slurp("ed25519.pub", &n);
    refused(t, n, NULL, "not a private key Wharf reads", NULL, 0);
    free(t);
    /* too large */
    unsigned char *big = calloc(1, SSHKEY_TEXT_MAX + 1);
    assert_non_null(big);
    memset(big, 'A', SSHKEY_TEXT_MAX + 1);
    refused(big, SSHKEY_TEXT_MAX + 1, NULL, "larger than", NULL, 0);
    free(big);
}

static EVP_PKEY *rsa_pss_key(void)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA-PSS", NULL);
    EVP_PKEY *k = NULL;
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
    assert_int_equal(EVP_PKEY_generate(ctx, &k), 1);
    EVP_PKEY_CTX_free(ctx);
    return k;
}

/* Keys of other types, from OpenSSL: refused by parse, and by public_blob
 * and sign when handed in anyway. */
static void test_r15_sshkey_other_key_types_refused(void **state)
{
    (void)state;
    EVP_PKEY *keys[] = {
        EVP_PKEY_Q_keygen(NULL, NULL, "ED448"),
        EVP_PKEY_Q_keygen(NULL, NULL, "X25519"),
        EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"),
        rsa_pss_key(),
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        assert_non_null(keys[i]);
        BIO *b = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PrivateKey(b, keys[i], NULL, NULL, 0,
                                                  NULL, NULL), 1);
        char *pem;
        long pn = BIO_get_mem_data(b, &pem);
        refused(pem, (size_t)pn, NULL, "unsupported key type", NULL, 0);
        BIO_free(b);
        unsigned char *out = (unsigned char *)1;
        size_t on = 1;
        struct error err = {0};
        assert_int_equal(sshkey_public_blob(keys[i], &out, &on, &err), -1);
        assert_null(out);
        assert_int_equal(sshkey_sign(keys[i], 0, (const unsigned char *)"x",
                                     1, &out, &on, &err), -1);
        assert_null(out);
        EVP_PKEY_free(keys[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_r15_sshkey_openssh_ed25519_signs_what_openssh_verifies),
        cmocka_unit_test(test_r15_sshkey_openssh_rsa_signs_each_algorithm),
        cmocka_unit_test(
            test_r15_sshkey_openssh_ecdsa_each_curve_signs_what_openssh_verifies),
        cmocka_unit_test(test_r15_sshkey_ecdsa_signature_mpints_are_canonical),
        cmocka_unit_test(test_r15_sshkey_pem_and_pkcs8_forms_give_the_same_key),
        cmocka_unit_test(test_r15_sshkey_pkcs8_ed25519),
        cmocka_unit_test(
            test_r15_sshkey_passphrase_opens_pkcs8_and_pem_only_with_it),
        cmocka_unit_test(
            test_r15_sshkey_encrypted_openssh_refused_with_a_hint_that_works),
        cmocka_unit_test(test_r15_sshkey_rsa_1024_refused),
        cmocka_unit_test(test_r15_sshkey_truncated_files_refused),
        cmocka_unit_test(
            test_r15_sshkey_every_corrupted_byte_refused_without_quoting_key_bytes),
        cmocka_unit_test(test_r15_sshkey_check_numbers_must_be_equal),
        cmocka_unit_test(test_r15_sshkey_private_key_must_match_the_public_key),
        cmocka_unit_test(test_r15_sshkey_trailing_bytes_refused),
        cmocka_unit_test(test_r15_sshkey_not_a_key_refused),
        cmocka_unit_test(test_r15_sshkey_other_key_types_refused),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
