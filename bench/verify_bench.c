/*
 * verify_bench.c - the CPU of one detached signature check as the AS2
 * paths make it (as2/cms.h: as2_cms_verify_detached; the sender checks
 * every signed MDN with it, the receiver every signed message), beside
 * the limit: OpenSSL's own one-shot RSA verification (EVP_DigestVerify)
 * over the same key and digest.
 *
 *   verify_bench [SIZE [N [THREADS]]]
 *
 * A 2048-bit RSA key and a self-signed certificate (read back from DER,
 * as a partner's certificate is) sign SIZE bytes (default 1024) with
 * SHA-256; then THREADS threads (default: 1, 2, 4 and 8 in turn) check
 * that signature N times each (default 2000). Prints per thread count
 * `verify_us_cpu` (process CPU per check) and `verify_per_s` (wall
 * clock), and once `raw_verify_us_cpu`: the one-shot verification with
 * the same key over the same bytes, one thread. Owns its keys and
 * buffers; touches no file.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "as2/cms.h"
#include "util/error.h"

#define MAX_THREADS 64

struct bench {
    X509 *cert;
    EVP_PKEY *key;
    unsigned char *content;
    size_t size;
    unsigned char *sig;
    size_t siglen;
    int n;
    atomic_int failed;          /* set by any thread whose check fails */
};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A self-signed certificate of key, through DER and back. */
static X509 *cert_for(EVP_PKEY *key)
{
    X509 *c = X509_new(), *back = NULL;
    unsigned char *der = NULL;
    if (c == NULL || X509_set_version(c, 2) != 1)
        goto out;
    ASN1_INTEGER_set(X509_get_serialNumber(c), 7);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400L);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"verify bench", -1,
                               -1, 0);
    if (X509_set_pubkey(c, key) != 1 || X509_set_issuer_name(c, name) != 1 ||
        X509_sign(c, key, EVP_sha256()) <= 0)
        goto out;
    int len = i2d_X509(c, &der);
    const unsigned char *p = der;
    back = len > 0 ? d2i_X509(NULL, &p, len) : NULL;
out:
    OPENSSL_free(der);
    X509_free(c);
    return back;
}

static int bench_sign(struct bench *b)
{
    struct error err = {0};
    struct as2_signer s = { b->cert, b->key, AS2_DIGEST_SHA256,
                            AS2_SIG_PKCS1 };
    BIO *in = BIO_new_mem_buf(b->content, (int)b->size);
    BIO *out = BIO_new(BIO_s_mem());
    char *p = NULL;
    int rc = in && out ? as2_cms_sign_detached(&s, in, out, &err) : -1;
    long len = rc == 0 ? BIO_get_mem_data(out, &p) : 0;
    if (rc == 0 && len > 0 && (b->sig = malloc((size_t)len)) != NULL) {
        memcpy(b->sig, p, (size_t)len);
        b->siglen = (size_t)len;
    } else {
        fprintf(stderr, "verify_bench: cannot sign: %s\n", err.msg);
        rc = -1;
    }
    BIO_free(in);
    BIO_free(out);
    return rc;
}

static void *verify_loop(void *arg)
{
    struct bench *b = arg;
    X509 *certs[1] = { b->cert };
    struct as2_trust t = { certs, 1, "bench", 0 };
    struct error err = {0};
    for (int i = 0; i < b->n && !b->failed; i++) {
        BIO *content = BIO_new_mem_buf(b->content, (int)b->size);
        struct as2_verified v;
        if (content == NULL ||
            as2_cms_verify_detached(&t, b->sig, b->siglen, content, &v,
                                    &err) != 0) {
            fprintf(stderr, "verify_bench: %s\n", err.msg);
            b->failed = 1;
        }
        BIO_free(content);
    }
    return NULL;
}

static int run_threads(struct bench *b, int threads)
{
    pthread_t th[MAX_THREADS];
    double w0 = clock_s(CLOCK_MONOTONIC);
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    int started = 0;
    while (started < threads &&
           pthread_create(&th[started], NULL, verify_loop, b) == 0)
        started++;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double wall = clock_s(CLOCK_MONOTONIC) - w0;
    double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (started < threads)
        fprintf(stderr, "verify_bench: started %d of %d threads\n", started,
                threads);
    if (started < threads || b->failed)
        return -1;
    double checks = (double)b->n * threads;
    printf("threads %d verify_us_cpu %.1f verify_per_s %.0f\n", threads,
           cpu / checks * 1e6, checks / wall);
    return 0;
}

/* OpenSSL's one-shot verification with the same key, one thread. */
static int raw_verify(const struct bench *b)
{
    unsigned char sig[512];
    size_t len = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m && EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, b->key) == 1
             && EVP_DigestSign(m, sig, &len, b->content, b->size) == 1;
    EVP_MD_CTX_free(m);
    EVP_PKEY *pub = X509_get0_pubkey(b->cert);
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; ok && i < b->n; i++) {
        EVP_MD_CTX *v = EVP_MD_CTX_new();
        ok = v && EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1
             && EVP_DigestVerify(v, sig, len, b->content, b->size) == 1;
        EVP_MD_CTX_free(v);
    }
    if (!ok)
        return fprintf(stderr, "verify_bench: raw verify failed\n"), -1;
    printf("raw_verify_us_cpu %.1f\n",
           (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / b->n * 1e6);
    return 0;
}

int main(int argc, char **argv)
{
    struct bench b = {0};
    b.size = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    b.n = argc > 2 ? atoi(argv[2]) : 2000;
    int only = argc > 3 ? atoi(argv[3]) : 0;
    if (b.size == 0 || b.n <= 0 || only < 0 || only > MAX_THREADS) {
        fprintf(stderr, "usage: verify_bench [SIZE [N [THREADS]]]\n");
        return 2;
    }
    b.key = EVP_RSA_gen(2048);
    b.cert = b.key ? cert_for(b.key) : NULL;
    b.content = malloc(b.size);
    if (b.cert == NULL || b.content == NULL)
        return 1;
    memset(b.content, 'x', b.size);
    if (bench_sign(&b) != 0)
        return 1;
    printf("size %zu signature_bytes %zu checks_per_thread %d\n", b.size,
           b.siglen, b.n);
    int rc = raw_verify(&b);
    int counts[] = { 1, 2, 4, 8 };
    size_t ncounts = sizeof(counts) / sizeof(counts[0]);
    if (only > 0) {
        counts[0] = only;
        ncounts = 1;
    }
    for (size_t i = 0; rc == 0 && i < ncounts; i++)
        rc = run_threads(&b, counts[i]);
    free(b.sig);
    free(b.content);
    X509_free(b.cert);
    EVP_PKEY_free(b.key);
    return rc == 0 ? 0 : 1;
}
