/*
 * as2_testkit.h - what the AS2 unit tests (test_as2_cms.c,
 * test_as2_message.c) share on top of testutil.h: the group fixture (RSA
 * keys and self-signed certificates for alice, bob, bob_old and mallory,
 * with their PEM files in a temp dir), byte buffers to and from memory
 * BIOs and files, running the openssl command line (posix_spawnp, never a
 * shell), a generating source / hashing sink BIO for the 64 MiB streaming
 * tests, and the peak memory probe those tests measure with. Test-only:
 * failures are cmocka assertions.
 */
#ifndef WHARF_AS2_TESTKIT_H
#define WHARF_AS2_TESTKIT_H

#include "testutil.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

extern char **environ;

#define N(a) (sizeof(a) / sizeof((a)[0]))

#define MUST(call, err)                                                     \
    do {                                                                    \
        if ((call) != 0)                                                    \
            fail_msg("%s failed: %s", #call, (err).msg);                    \
    } while (0)

/* ---- the fixture: keys, certificates, their PEM files ---- */

struct ident {
    EVP_PKEY *key;
    X509 *cert;
    char pem[300], keypem[300];
};

struct fx {
    char dir[256];
    struct ident alice, bob, bob_old, mallory;
    X509 *alice_renewed;        /* same key as alice, another certificate
                                 * (test_as2_cms only; NULL elsewhere) */
};

/* A self-signed certificate for key: O=Wharf Test, CN=cn, valid from an
 * hour ago for a year. */
static inline X509 *make_cert(EVP_PKEY *key, const char *cn, long serial)
{
    X509 *c = X509_new();
    assert_non_null(c);
    assert_int_equal(X509_set_version(c, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 365);
    assert_int_equal(X509_set_pubkey(c, key), 1);
    X509_NAME *n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                               (const unsigned char *)"Wharf Test", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    assert_int_equal(X509_set_issuer_name(c, n), 1);
    assert_true(X509_sign(c, key, EVP_sha256()) > 0);
    return c;
}

/* A 2048-bit RSA key and its certificate, written to dir/file.pem and
 * dir/file.key. */
static inline void make_ident(struct ident *id, const char *dir,
                              const char *file, const char *cn, long serial)
{
    id->key = EVP_RSA_gen(2048);
    assert_non_null(id->key);
    id->cert = make_cert(id->key, cn, serial);
    snprintf(id->pem, sizeof(id->pem), "%s/%s.pem", dir, file);
    snprintf(id->keypem, sizeof(id->keypem), "%s/%s.key", dir, file);
    BIO *b = BIO_new_file(id->pem, "w");
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_X509(b, id->cert), 1);
    BIO_free(b);
    b = BIO_new_file(id->keypem, "w");
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, id->key, NULL, NULL, 0,
                                              NULL, NULL), 1);
    BIO_free(b);
}

static inline void free_ident(struct ident *id)
{
    EVP_PKEY_free(id->key);
    X509_free(id->cert);
}

/* Group setup: the temp dir and the four identities (bob_old is an older
 * "bob"). */
static inline int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    make_ident(&f->alice, f->dir, "alice", "alice", 11);
    make_ident(&f->bob, f->dir, "bob", "bob", 21);
    make_ident(&f->bob_old, f->dir, "bob_old", "bob", 20);
    make_ident(&f->mallory, f->dir, "mallory", "mallory", 31);
    *state = f;
    return 0;
}

static inline int fx_teardown(void **state)
{
    struct fx *f = *state;
    free_ident(&f->alice);
    free_ident(&f->bob);
    free_ident(&f->bob_old);
    free_ident(&f->mallory);
    X509_free(f->alice_renewed);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

/* ---- byte buffers, memory BIOs, files ---- */

struct buf {
    unsigned char *p;
    size_t n;
};

static inline void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

static inline struct buf buf_copy(const void *p, size_t n)
{
    struct buf b = {malloc(n ? n : 1), n};
    assert_non_null(b.p);
    if (n > 0)
        memcpy(b.p, p, n);
    return b;
}

static inline int buf_eq(const struct buf *a, const struct buf *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

/* A read-only memory BIO over b. */
static inline BIO *rbio(const struct buf *b)
{
    BIO *m = BIO_new_mem_buf(b->n ? (void *)b->p : (void *)"", (int)b->n);
    assert_non_null(m);
    return m;
}

/* Move a memory BIO's contents into a buf and free the BIO. */
static inline struct buf take(BIO *m)
{
    char *p;
    long n = BIO_get_mem_data(m, &p);
    struct buf b = buf_copy(p, (size_t)n);
    BIO_free(m);
    return b;
}

static inline void spit(const char *path, const struct buf *b)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b->p, 1, b->n, fp), b->n);
    fclose(fp);
}

static inline struct buf slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    BIO *m = BIO_new(BIO_s_mem());
    char tmp[8192];
    size_t k;
    while ((k = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        BIO_write(m, tmp, (int)k);
    fclose(fp);
    return take(m);
}

/* ---- the openssl command line ---- */

static inline void path_in(const struct fx *f, char *buf, size_t n,
                           const char *name)
{
    snprintf(buf, n, "%s/%s", f->dir, name);
}

/* Run argv (posix_spawnp) with stdout to out (or /dev/null) and stderr
 * to dir/stderr.txt; print stderr when it fails. The exit status. */
static inline int run(const struct fx *f, const char *const argv[],
                      const char *out)
{
    char errpath[400];
    snprintf(errpath, sizeof(errpath), "%s/stderr.txt", f->dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out ? out : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, errpath,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
                          environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (code != 0) {
        struct buf e = slurp(errpath);
        fprintf(stderr, "command %s %s failed (%d): %.*s\n", argv[0],
                argv[1] ? argv[1] : "", code, (int)e.n, (char *)e.p);
        buf_free(&e);
    }
    return code;
}

/* ---- streaming: a generating source that is also a hashing sink ---- */

/* Read from it: left pseudo-random bytes (every third an 'E', so they
 * compress a little); write to it: hashed and dropped. Either way what
 * passes goes into the SHA-256 in md. */
struct gen {
    uint64_t left, x;
    EVP_MD_CTX *md;
};

static inline int gen_read(BIO *b, char *out, int len)
{
    struct gen *g = BIO_get_data(b);
    size_t n = (size_t)len < g->left ? (size_t)len : g->left;
    for (size_t i = 0; i < n; i++) {
        g->x ^= g->x << 13;
        g->x ^= g->x >> 7;
        g->x ^= g->x << 17;
        out[i] = (char)(g->x >> 24);
        if (i % 3 == 0)
            out[i] = 'E';               /* compressible, a little */
    }
    EVP_DigestUpdate(g->md, out, n);
    g->left -= n;
    return (int)n;
}

static inline int hash_write(BIO *b, const char *in, int len)
{
    EVP_DigestUpdate(((struct gen *)BIO_get_data(b))->md, in, (size_t)len);
    return len;
}

static inline long quiet_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* The BIO method for struct gen; BIO_meth_free it. */
static inline BIO_METHOD *gen_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "gen");
    BIO_meth_set_read(m, gen_read);
    BIO_meth_set_write(m, hash_write);
    BIO_meth_set_ctrl(m, quiet_ctrl);
    return m;
}

/* A generator of size bytes (0: a hashing sink), its SHA-256 started. */
static inline struct gen gen_start(uint64_t size)
{
    struct gen g = {size, 88172645463325252ull, EVP_MD_CTX_new()};
    EVP_DigestInit_ex(g.md, EVP_sha256(), NULL);
    return g;
}

/* The SHA-256 of what went through g into hash (32 bytes); frees g. */
static inline void gen_finish(struct gen *g, unsigned char *hash)
{
    EVP_DigestFinal_ex(g->md, hash, NULL);
    EVP_MD_CTX_free(g->md);
    g->md = NULL;
}

static inline BIO *gen_bio(BIO_METHOD *m, struct gen *g)
{
    BIO *b = BIO_new(m);
    assert_non_null(b);
    BIO_set_data(b, g);
    BIO_set_init(b, 1);
    return b;
}

/* ---- peak memory ---- */

/* Peak memory of a stretch of code: reset the kernel's high-water mark
 * (VmHWM, via clear_refs) and read it back; where that is not allowed,
 * the lifetime peak (ru_maxrss) is all there is. In KiB. */
static inline long status_kib(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fp != NULL && fgets(line, sizeof(line), fp) != NULL)
        if (strncmp(line, field, n) == 0)
            v = strtol(line + n, NULL, 10);
    if (fp != NULL)
        fclose(fp);
    return v;
}

struct peak {
    int hwm;                    /* 1: VmHWM was reset */
    long start;
};

static inline void peak_begin(struct peak *p)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    p->hwm = fd >= 0 && write(fd, "5", 1) == 1;
    if (fd >= 0)
        close(fd);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    p->start = p->hwm ? status_kib("VmRSS:") : ru.ru_maxrss;
}

static inline long peak_growth(const struct peak *p)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (p->hwm ? status_kib("VmHWM:") : ru.ru_maxrss) - p->start;
}

/* The control: what the probe shows for a 32 MiB buffer (KiB), at least
 * 30 MiB where VmHWM could be reset. p->hwm tells which instrument. */
static inline long peak_control(struct peak *p)
{
    peak_begin(p);
    unsigned char *big = malloc(32u << 20);
    assert_non_null(big);
    memset(big, 1, 32u << 20);
    long control = peak_growth(p);
    free(big);
    if (p->hwm)
        assert_true(control >= 30 * 1024);
    return control;
}

#endif
