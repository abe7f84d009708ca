/*
 * keyop_bench.c - a private-key signature through the key processes,
 * beside the same signature made in this process (issue 14: "key
 * operations through the key process must stay within 10% of in-process
 * signing").
 *
 * In a fresh directory under $TMPDIR it makes a keystore and an RSA-2048
 * key, seals the key as serve keeps an AS2 profile key, and signs N
 * SHA-256 digests of a 120-byte text (CMS signs its signed attributes so:
 * EVP_DigestSign, PKCS#1 v1.5) with:
 *
 *   raw       the EVP_PKEY itself: OpenSSL alone, the machine's limit;
 *   handle    the vault's handle key in this process (vault_key_load on a
 *             local vault: Wharf's provider and key table, no process
 *             boundary);
 *   keyproc   the handle key through key processes started as serve
 *             starts them (keyproc_start; each request a round trip on
 *             its socketpair).
 *
 * Each with one thread, and with two threads (two key processes for
 * keyproc, as serve has on two cores). Then N seals of 32 bytes in this
 * process and through one key process: a request without RSA, the cost
 * of the round trip itself.
 *
 * Prints key value lines: per configuration its ops_per_s, the CPU
 * microseconds per operation of this process plus the key processes
 * (/proc/PID/schedstat), the key processes' part of it, and the ratios
 * of keyproc to raw. N (default
 * 2000) stays within the key processes' rate limits' first second
 * (keyhost.h: 4,000 private-key operations and 20,000 requests a second
 * in all), so the limits do not pace it; a longer run would be held at
 * 4,000 signatures a second by design.
 *
 * Owns and removes its temp directory; never touches anything else.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "util/secret.h"
#include "vault/keyop.h"
#include "vault/keyproc.h"
#include "vault/vault.h"

#define CTX "profile-key:bench"
#define THREADS_MAX 2

static const char TEXT[121] =
    "1.2.840.113549.1.9.3 content-type 1.2.840.113549.1.7.1 signing-time "
    "message-digest 7a1f0c9e2b3d4f5a6b7c8d9e0f1a2b3c4d5";

struct job {
    EVP_PKEY *key;          /* sign with it, or */
    struct vault *v;        /* seal with it */
    long n;
    int failed;
};

static double now_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "keyop_bench: %s: %s\n", what, why);
    exit(1);
}

static int sign_once(EVP_PKEY *key)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    unsigned char sig[512];
    size_t len = sizeof(sig);
    int ok = md != NULL &&
             EVP_DigestSignInit(md, &pc, EVP_sha256(), NULL, key) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
             EVP_DigestSign(md, sig, &len, (const unsigned char *)TEXT,
                            sizeof(TEXT) - 1) == 1;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

static int seal_once(struct vault *v, const struct secret *s)
{
    unsigned char *blob = NULL;
    size_t n = 0;
    struct error err = {0};
    int rc = vault_seal(v, "bench:value", s, &blob, &n, &err);
    free(blob);
    return rc;
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct secret *s = j->v ? secret_from(TEXT, 32) : NULL;
    for (long i = 0; i < j->n && !j->failed; i++)
        j->failed = j->key ? sign_once(j->key) < 0 : seal_once(j->v, s) < 0;
    secret_free(s);
    return NULL;
}

/* CPU seconds the key processes have run (schedstat: nanoseconds). */
static double keyprocs_cpu_s(void)
{
    double t = 0;
    for (size_t i = 0; i < keyproc_count(); i++) {
        char path[64];
        unsigned long long ns = 0;
        snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)keyproc_pid(i));
        FILE *f = fopen(path, "r");
        if (f == NULL || fscanf(f, "%llu", &ns) != 1)
            die(path, "cannot read the key process's CPU time");
        fclose(f);
        t += (double)ns / 1e9;
    }
    return t;
}

/* n operations split over threads; prints NAME_ops_per_s and
 * NAME_cpu_us_per_op, returns the rate. */
static double run(const char *name, EVP_PKEY *key, struct vault *v,
                  int threads, long n)
{
    pthread_t t[THREADS_MAX];
    struct job j[THREADS_MAX];
    double kp0 = keyprocs_cpu_s(), cpu0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double t0 = now_s(CLOCK_MONOTONIC);
    for (int i = 0; i < threads; i++) {
        j[i] = (struct job){ key, v, n / threads, 0 };
        if (pthread_create(&t[i], NULL, job_main, &j[i]) != 0)
            die(name, "cannot start a thread");
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (j[i].failed)
            die(name, "an operation failed");
    }
    double wall = now_s(CLOCK_MONOTONIC) - t0;
    double cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    double kp = keyprocs_cpu_s() - kp0;
    double done = (double)(n / threads * threads);
    printf("%s_ops_per_s %.1f\n", name, done / wall);
    printf("%s_cpu_us_per_op %.1f\n", name, (cpu + kp) * 1e6 / done);
    if (keyproc_count() > 0)
        printf("%s_keyproc_cpu_us_per_op %.1f\n", name, kp * 1e6 / done);
    return done / wall;
}

static int child_main(void *arg, int fd)
{
    struct error err = {0};
    struct vault *v = vault_open(arg, &err);
    if (v == NULL)
        return 1;
    int rc = keyproc_serve(v, NULL, 0, NULL, fd);
    vault_close(v);
    return rc;
}

/* The key processes (n of them) and a remote vault through them. */
static struct vault *keyprocs_open(const char *ks, size_t n)
{
    struct error err = {0};
    if (keyproc_start(child_main, (void *)ks, n, &err) < 0 ||
        keyproc_watch(&err) < 0)
        die("keyproc_start", err.msg);
    struct vault *r = vault_open(ks, &err);
    if (r == NULL)
        die("vault_open through the key processes", err.msg);
    return r;
}

static EVP_PKEY *load(struct vault *v, const unsigned char *blob, size_t n)
{
    struct error err = {0};
    EVP_PKEY *h = vault_key_load(v, CTX, blob, n, &err);
    if (h == NULL)
        die("vault_key_load", err.msg);
    return h;
}

/* The key sealed under CTX, as serve keeps a profile key. */
static unsigned char *seal_key(struct vault *v, EVP_PKEY *key, size_t *n)
{
    unsigned char *der = NULL, *blob = NULL;
    int len = i2d_PrivateKey(key, &der);
    struct error err = {0};
    struct secret *s = len > 0 ? secret_from(der, (size_t)len) : NULL;
    if (s == NULL || vault_seal(v, CTX, s, &blob, n, &err) < 0)
        die("vault_seal", s ? err.msg : "cannot encode the key");
    OPENSSL_clear_free(der, (size_t)len);
    secret_free(s);
    return blob;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

/* Through n key processes with as many threads: rate, printed. */
static double remote_signs(const char *ks, const unsigned char *blob,
                           size_t len, size_t nkp, long n)
{
    char name[32];
    struct vault *r = keyprocs_open(ks, nkp);
    EVP_PKEY *h = load(r, blob, len);
    snprintf(name, sizeof(name), "keyproc_%zut", nkp);
    double rate = run(name, h, NULL, (int)nkp, n);
    EVP_PKEY_free(h);
    vault_close(r);
    keyproc_stop();
    return rate;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);     /* nothing buffered at a fork */
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2000;
    if (n < THREADS_MAX || n > 4000) {
        fprintf(stderr, "usage: keyop_bench [N, 2..4000, default 2000]\n");
        return 2;
    }
    const char *base = getenv("TMPDIR");
    char dir[1024], ks[1100];
    snprintf(dir, sizeof(dir), "%s/wharf-keyop-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(dir) == NULL)
        die(dir, strerror(errno));
    snprintf(ks, sizeof(ks), "%s/keystore", dir);
    struct error err = {0};
    struct vault *v = vault_create(ks, &err) == 0 ? vault_open(ks, &err) : NULL;
    EVP_PKEY *raw = EVP_RSA_gen(2048);
    if (v == NULL || raw == NULL)
        die("keystore", v ? "cannot make an RSA key" : err.msg);
    size_t len = 0;
    unsigned char *blob = seal_key(v, raw, &len);
    EVP_PKEY *h = load(v, blob, len);
    printf("signs %ld\n", n);
    double raw1 = run("raw_1t", raw, NULL, 1, n);
    double raw2 = run("raw_2t", raw, NULL, 2, n);
    run("handle_1t", h, NULL, 1, n);
    run("handle_2t", h, NULL, 2, n);
    run("seal_local", NULL, v, 1, n);
    EVP_PKEY_free(h);
    double kp1 = remote_signs(ks, blob, len, 1, n);
    double kp2 = remote_signs(ks, blob, len, 2, n);
    struct vault *r = keyprocs_open(ks, 1);
    run("seal_keyproc", NULL, r, 1, n);
    vault_close(r);
    keyproc_stop();
    printf("ratio_keyproc_1t_to_raw %.3f\n", kp1 / raw1);
    printf("ratio_keyproc_2t_to_raw %.3f\n", kp2 / raw2);
    EVP_PKEY_free(raw);
    free(blob);
    vault_close(v);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
