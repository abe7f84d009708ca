/*
 * test_keyop.c - private keys behind handles (R15, R22): AS2 profile keys
 * and TLS keys as vault handle keys (vault/keyop.h) that OpenSSL's CMS code
 * signs (PKCS#1 v1.5, PSS) and decrypts (PKCS#1 v1.5, OAEP) with, while
 * the EVP_PKEY itself holds no private key; the purposes each key is
 * refused; then the same through a real key process (fork, socketpair):
 * the remote vault seals, unseals, wraps payload keys, signs the audit
 * trail, and a killed key process is noticed; with two key processes, a
 * request is answered while the other one is stopped mid-request (they
 * serve at once), by a key loaded once into both. An http connector's client
 * certificate key (sealed PEM, "connector:NAME:auth.key") opens as a handle
 * key that signs and refuses to decrypt, in this process and through the
 * key process, never unseals through it, and at most 64 are held. There
 * is one key process per CPU serve may use; key processes that answer
 * alike requests differently stop serve (or do not start).
 */
#include "testutil.h"
#include "as2_testkit.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "as2/cms.h"
#include "util/cpus.h"
#include "util/secret.h"
#include "vault/keyop.h"
#include "vault/keyproc.h"
#include "vault/vault.h"

struct kfx {
    struct fx as2;                  /* alice, bob... (as2_testkit.h) */
    char ks[320], tlskey[320];
    struct vault *v;
    unsigned char *blob;            /* alice's key, sealed */
    size_t bloblen;
    EVP_PKEY *tls;                  /* an EC key, written to tlskey */
};

#define CTX "profile-key:alice"

static void seal_key(struct kfx *k, EVP_PKEY *key)
{
    unsigned char *der = NULL;
    int n = i2d_PrivateKey(key, &der);
    assert_true(n > 0);
    struct secret *s = secret_from(der, (size_t)n);
    OPENSSL_clear_free(der, (size_t)n);
    struct error err = {0};
    MUST(vault_seal(k->v, CTX, s, &k->blob, &k->bloblen, &err), err);
    secret_free(s);
}

static int kfx_setup(void **state)
{
    struct kfx *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    void *inner = NULL;
    fx_setup(&inner);
    k->as2 = *(struct fx *)inner;
    free(inner);
    snprintf(k->ks, sizeof(k->ks), "%s/keystore", k->as2.dir);
    snprintf(k->tlskey, sizeof(k->tlskey), "%s/tls.key", k->as2.dir);
    struct error err = {0};
    MUST(vault_create(k->ks, &err), err);
    k->v = vault_open(k->ks, &err);
    assert_non_null(k->v);
    seal_key(k, k->as2.alice.key);
    k->tls = EVP_EC_gen("P-256");
    assert_non_null(k->tls);
    BIO *b = BIO_new_file(k->tlskey, "w");
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, k->tls, NULL, NULL, 0, NULL,
                                              NULL), 1);
    BIO_free(b);
    chmod(k->tlskey, 0600);
    *state = k;
    return 0;
}

static int kfx_teardown(void **state)
{
    struct kfx *k = *state;
    vault_close(k->v);
    free(k->blob);
    EVP_PKEY_free(k->tls);
    struct fx *inner = malloc(sizeof(*inner));
    *inner = k->as2;
    void *p = inner;
    fx_teardown(&p);
    free(k);
    return 0;
}

/* ---- CMS through a handle key ------------------------------------------- */

static void sign_verify(EVP_PKEY *handle, X509 *cert, enum as2_sig_padding pad)
{
    static const char text[] = "EDI interchange";
    struct as2_signer s = { cert, handle, AS2_DIGEST_SHA256, pad };
    struct error err = {0};
    BIO *in = BIO_new_mem_buf(text, sizeof(text) - 1);
    BIO *sig = BIO_new(BIO_s_mem());
    MUST(as2_cms_sign_detached(&s, in, sig, &err), err);
    BIO_free(in);
    struct buf b = take(sig);
    X509 *certs[1] = { cert };
    struct as2_trust t = { certs, 1, "alice", 0 };
    struct as2_verified v;
    in = BIO_new_mem_buf(text, sizeof(text) - 1);
    MUST(as2_cms_verify_detached(&t, b.p, b.n, in, &v, &err), err);
    assert_int_equal(v.pss, pad == AS2_SIG_PSS);
    BIO_free(in);
    buf_free(&b);
}

static void encrypt_decrypt(EVP_PKEY *handle, X509 *cert,
                            enum as2_key_transport kt)
{
    static const char text[] = "a purchase order";
    X509 *r[1] = { cert };
    struct as2_encrypt_opts eo = { AS2_CIPHER_AES256_CBC, kt, r, 1 };
    struct error err = {0};
    BIO *in = BIO_new_mem_buf(text, sizeof(text) - 1);
    BIO *enc = BIO_new(BIO_s_mem());
    MUST(as2_cms_encrypt(&eo, in, enc, &err), err);
    BIO_free(in);
    struct as2_key keys[1] = { { handle, cert } };
    struct as2_decrypt_opts d = { keys, 1, 0 };
    struct as2_decrypted info;
    BIO *out = BIO_new(BIO_s_mem());
    MUST(as2_cms_decrypt(&d, enc, out, &info, &err), err);
    assert_int_equal(info.kt, kt);
    struct buf got = take(out);
    assert_int_equal(got.n, sizeof(text) - 1);
    assert_memory_equal(got.p, text, got.n);
    buf_free(&got);
    BIO_free(enc);
}

/* The handle key's params hold no private component. */
static void assert_no_private(EVP_PKEY *k)
{
    BIGNUM *d = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_D, &d), 0);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &d),
                     0);
    unsigned char *der = NULL;
    assert_true(i2d_PrivateKey(k, &der) <= 0);
    ERR_clear_error();
}

static void test_r15_handle_key_signs_and_decrypts_cms(void **state)
{
    struct kfx *k = *state;
    struct error err = {0};
    EVP_PKEY *h = vault_key_load(k->v, CTX, k->blob, k->bloblen, &err);
    if (h == NULL)
        fail_msg("vault_key_load: %s", err.msg);
    assert_true(EVP_PKEY_is_a(h, "RSA"));
    assert_no_private(h);
    sign_verify(h, k->as2.alice.cert, AS2_SIG_PKCS1);
    sign_verify(h, k->as2.alice.cert, AS2_SIG_PSS);
    encrypt_decrypt(h, k->as2.alice.cert, AS2_KT_RSA_PKCS1);
    encrypt_decrypt(h, k->as2.alice.cert, AS2_KT_RSA_OAEP);
    encrypt_decrypt(h, k->as2.alice.cert, AS2_KT_RSA_OAEP_SHA256);
    EVP_PKEY *again = vault_key_load(k->v, CTX, k->blob, k->bloblen, &err);
    assert_non_null(again);
    assert_int_equal(EVP_PKEY_eq(h, again), 1);
    EVP_PKEY_free(again);
    EVP_PKEY_free(h);
}

static void test_r15_handle_key_refuses_other_contexts(void **state)
{
    struct kfx *k = *state;
    struct error err = {0};
    struct secret *s = secret_from("seed", 4);
    unsigned char *blob = NULL;
    size_t n = 0;
    MUST(vault_seal(k->v, "totp:alice", s, &blob, &n, &err), err);
    secret_free(s);
    assert_null(vault_key_load(k->v, "totp:alice", blob, n, &err));
    assert_non_null(strstr(err.msg, "refused"));
    free(blob);
}

static void test_r22_tls_handle_key_only_signs(void **state)
{
    struct kfx *k = *state;
    struct error err = {0};
    EVP_PKEY *h = vault_tls_key(k->tlskey, &err);
    if (h == NULL)
        fail_msg("vault_tls_key: %s", err.msg);
    assert_true(EVP_PKEY_is_a(h, "EC"));
    assert_no_private(h);
    unsigned char sig[256];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, h), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen,
                                    (const unsigned char *)"hello", 5), 1);
    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();          /* verified with the real public key */
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                                          k->tls), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, siglen,
                                      (const unsigned char *)"hello", 5), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(h);
    chmod(k->tlskey, 0644);         /* readable by others: refused */
    assert_null(vault_tls_key(k->tlskey, &err));
    assert_non_null(strstr(err.msg, "readable by others"));
    chmod(k->tlskey, 0600);
}

static void test_r22_rsa_tls_handle_key_does_not_decrypt(void **state)
{
    struct kfx *k = *state;
    char path[400];
    snprintf(path, sizeof(path), "%s/rsa-tls.key", k->as2.dir);
    BIO *b = BIO_new_file(path, "w");
    assert_int_equal(PEM_write_bio_PrivateKey(b, k->as2.bob.key, NULL, NULL,
                                              0, NULL, NULL), 1);
    BIO_free(b);
    chmod(path, 0600);
    struct error err = {0};
    EVP_PKEY *h = vault_tls_key(path, &err);
    assert_non_null(h);
    /* a ciphertext for bob's key: the handle refuses to decrypt it */
    unsigned char ct[512], pt[512];
    size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k->as2.bob.key, NULL);
    assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_encrypt(c, ct, &ctlen,
                                      (const unsigned char *)"k", 1), 1);
    EVP_PKEY_CTX_free(c);
    c = EVP_PKEY_CTX_new(h, NULL);
    assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
    assert_true(EVP_PKEY_decrypt(c, pt, &ptlen, ct, ctlen) <= 0);
    EVP_PKEY_CTX_free(c);
    ERR_clear_error();
    EVP_PKEY_free(h);
}


/* ---- http client certificate keys ----------------------------------------- */

#define CLIENT_CTX "connector:mtls:auth.key"

/* key as PEM (as flow import seals an auth.key file), sealed under ctx. */
static unsigned char *seal_pem(struct vault *v, EVP_PKEY *key,
                               const char *ctx, size_t *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
                                              NULL), 1);
    char *pem = NULL;
    long len = BIO_get_mem_data(b, &pem);
    struct secret *s = secret_from(pem, (size_t)len);
    BIO_free(b);
    unsigned char *blob = NULL;
    struct error err = {0};
    MUST(vault_seal(v, ctx, s, &blob, n, &err), err);
    secret_free(s);
    return blob;
}

/* h signs (verified with bob's real key) and refuses to decrypt. */
static void client_key_signs_only(EVP_PKEY *h, EVP_PKEY *real)
{
    assert_true(EVP_PKEY_is_a(h, "RSA"));
    assert_no_private(h);
    unsigned char sig[512], ct[512], pt[512];
    size_t siglen = sizeof(sig), ctlen = sizeof(ct), ptlen = sizeof(pt);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, h), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen,
                                    (const unsigned char *)"hello", 5), 1);
    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                                          real), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, siglen,
                                      (const unsigned char *)"hello", 5), 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(real, NULL);
    assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_encrypt(c, ct, &ctlen,
                                      (const unsigned char *)"k", 1), 1);
    EVP_PKEY_CTX_free(c);
    c = EVP_PKEY_CTX_new(h, NULL);
    assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
    assert_true(EVP_PKEY_decrypt(c, pt, &ptlen, ct, ctlen) <= 0);
    EVP_PKEY_CTX_free(c);
    ERR_clear_error();
}

/* vault_client_key on v: signs only; bound to its connector and to the
 * auth.key context. */
static void client_key_checks(struct kfx *k, struct vault *v)
{
    struct error err = {0};
    size_t n = 0, n2 = 0;
    unsigned char *blob = seal_pem(k->v, k->as2.bob.key, CLIENT_CTX, &n);
    EVP_PKEY *h = vault_client_key(v, "mtls", blob, n, &err);
    if (h == NULL)
        fail_msg("vault_client_key: %s", err.msg);
    client_key_signs_only(h, k->as2.bob.key);
    EVP_PKEY *again = vault_client_key(v, "mtls", blob, n, &err);
    assert_non_null(again);
    assert_int_equal(EVP_PKEY_eq(h, again), 1);
    EVP_PKEY_free(again);
    EVP_PKEY_free(h);
    /* another connector's name: the context does not match */
    assert_null(vault_client_key(v, "other", blob, n, &err));
    assert_null(vault_client_key(v, "a:b", blob, n, &err));
    /* a connector's other secret does not load as a key */
    unsigned char *pw = seal_pem(k->v, k->as2.bob.key,
                                 "connector:mtls:auth.password_file", &n2);
    assert_null(vault_client_key(v, "mtls", pw, n2, &err));
    free(pw);
    free(blob);
}

static void test_r15_client_key_handle_signs_refuses_decrypt(void **state)
{
    client_key_checks(*state, ((struct kfx *)*state)->v);
}

/* ---- through a key process ------------------------------------------------ */

static int child_main(void *arg, int fd)
{
    struct kfx *k = arg;
    struct error err = {0};
    struct vault *v = vault_open(k->ks, &err);
    if (v == NULL)
        return 1;
    const char *paths[1] = { k->tlskey };
    int rc = keyproc_serve(v, paths, 1, NULL, fd);
    vault_close(v);
    return rc;
}

static struct vault *start_keyprocs(struct kfx *k, size_t n)
{
    struct error err = {0};
    MUST(keyproc_start(child_main, k, n, &err), err);
    MUST(keyproc_watch(&err), err);             /* serve: after its sandbox */
    struct vault *r = vault_open(k->ks, &err);
    if (r == NULL)
        fail_msg("remote vault_open: %s", err.msg);
    return r;
}

static struct vault *start_keyproc(struct kfx *k)
{
    return start_keyprocs(k, 1);
}

static void test_r15_keyproc_remote_vault(void **state)
{
    struct kfx *k = *state;
    struct vault *r = start_keyproc(k);
    struct error err = {0};
    assert_string_equal(vault_active_id(r), vault_active_id(k->v));
    /* sealing there opens here, and back */
    struct secret *s = secret_from("client secret", 13), *o;
    unsigned char *blob = NULL;
    size_t n = 0;
    MUST(vault_seal(r, "conn:x", s, &blob, &n, &err), err);
    assert_non_null(o = vault_unseal(k->v, "conn:x", blob, n, &err));
    assert_true(secret_equal(s, o));
    secret_free(o);
    assert_non_null(o = vault_unseal(r, "conn:x", blob, n, &err));
    assert_true(secret_equal(s, o));
    secret_free(o);
    secret_free(s);
    free(blob);
    /* a profile key does not unseal through the key process */
    assert_null(vault_unseal(r, CTX, k->blob, k->bloblen, &err));
    assert_non_null(strstr(err.msg, "does not leave the key process"));
    /* rotation does not run through it */
    assert_int_equal(vault_rotate(r, k->ks, &err), -1);
    /* audit signatures made there verify here */
    unsigned char sig[VAULT_SIG_LEN];
    char id[VAULT_KEY_ID_LEN + 1];
    MUST(vault_audit_sign(r, "head", 4, sig, id, &err), err);
    MUST(vault_audit_verify(k->v, id, "head", 4, sig, &err), err);
    MUST(vault_audit_verify(r, id, "head", 4, sig, &err), err);
    assert_int_equal(vault_audit_verify(r, id, "hea!", 4, sig, &err), -1);
    /* profile keys: CMS through the key process */
    EVP_PKEY *h = vault_key_load(r, CTX, k->blob, k->bloblen, &err);
    if (h == NULL)
        fail_msg("remote vault_key_load: %s", err.msg);
    assert_no_private(h);
    sign_verify(h, k->as2.alice.cert, AS2_SIG_PSS);
    encrypt_decrypt(h, k->as2.alice.cert, AS2_KT_RSA_OAEP_SHA256);
    EVP_PKEY_free(h);
    /* the TLS key: only the configured path */
    EVP_PKEY *t = vault_tls_key(k->tlskey, &err);
    assert_non_null(t);
    EVP_PKEY_free(t);
    assert_null(vault_tls_key("/etc/ssl/private/other.key", &err));
    assert_non_null(strstr(err.msg, "refused"));
    vault_close(r);
    keyproc_stop();
    assert_int_equal(keyproc_lost(), 0);
}

static void test_r15_keyproc_payload_round_trip(void **state)
{
    struct kfx *k = *state;
    struct vault *r = start_keyproc(k);
    struct error err = {0};
    char path[400];
    snprintf(path, sizeof(path), "%s/payload", k->as2.dir);
    struct payload_writer *w = payload_create(r, path, "msg-1", &err);
    assert_non_null(w);
    MUST(payload_write(w, "0123456789", 10, &err), err);
    struct payload_info info;
    MUST(payload_finish(w, &info, NULL, &err), err);
    struct payload_reader *rd = payload_open(k->v, path, "msg-1", &err);
    assert_non_null(rd);                    /* written there, read here */
    char buf[32];
    assert_int_equal(payload_read(rd, buf, sizeof(buf), &err), 10);
    payload_close(rd);
    assert_null(payload_open(r, path, "msg-2", &err));  /* bound to msg-1 */
    assert_non_null(rd = payload_open(r, path, "msg-1", &err));
    assert_int_equal(payload_read(rd, buf, sizeof(buf), &err), 10);
    assert_memory_equal(buf, "0123456789", 10);
    payload_close(rd);
    assert_int_equal(payload_rewrap(r, path, "msg-1", &err), -1);
    vault_close(r);
    keyproc_stop();
}

static void test_r15_keyproc_death_is_noticed(void **state)
{
    struct kfx *k = *state;
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);    /* the watcher's SIGTERM */
    struct vault *r = start_keyprocs(k, 2);
    pid_t pid = keyproc_pid(1);                 /* the second one */
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    struct timespec ts = { 30, 0 };
    assert_int_equal(sigtimedwait(&term, NULL, &ts), SIGTERM);
    assert_int_equal(keyproc_lost(), 1);
    struct error err = {0};
    struct secret *s = secret_from("x", 1);
    unsigned char *blob = NULL;
    size_t n = 0;
    assert_int_equal(vault_seal(r, "conn:x", s, &blob, &n, &err), -1);
    assert_non_null(strstr(err.msg, "wharf serve is stopping"));
    secret_free(s);
    vault_close(r);
    keyproc_stop();
    assert_int_equal(keyproc_lost(), 1);
}

/* serve starts one key process per CPU it may run on (its affinity mask,
 * not the CPUs online), at most KEYPROC_MAX: pinned to one CPU, one. */
static void test_r15_one_key_process_per_usable_cpu(void **state)
{
    (void)state;
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
    size_t n = (size_t)CPU_COUNT(&all), first = 0;
    size_t whole = keyproc_default_count(), cpus = cpus_usable();
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
    size_t pinned = keyproc_default_count(), pinned_cpus = cpus_usable();
    assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
    assert_int_equal(cpus, n);
    assert_int_equal(whole, n > KEYPROC_MAX ? KEYPROC_MAX : n);
    assert_int_equal(pinned_cpus, 1);
    assert_int_equal(pinned, 1);
}

/* Two key processes that are not alike: the one that starts second opens
 * another keystore (other_ks) or is given no TLS key (no_tls). Which one
 * starts second is decided by a marker file, created by the first. */
struct split {
    struct kfx *k;
    char marker[400], other_ks[400];
    int no_tls;
};

static int split_main(void *arg, int fd)
{
    struct split *s = arg;
    int fm = open(s->marker, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    int second = fm < 0;
    if (fm >= 0)
        close(fm);
    struct error err = {0};
    const char *ks = second && s->other_ks[0] ? s->other_ks : s->k->ks;
    struct vault *v = vault_open(ks, &err);
    if (v == NULL)
        return 1;
    const char *paths[1] = { s->k->tlskey };
    int rc = keyproc_serve(v, paths, second && s->no_tls ? 0 : 1, NULL, fd);
    vault_close(v);
    return rc;
}

static void split_start(struct split *s, struct kfx *k, const char *name)
{
    struct error err = {0};
    s->k = k;
    snprintf(s->marker, sizeof(s->marker), "%s/%s.first", k->as2.dir, name);
    unlink(s->marker);
    MUST(keyproc_start(split_main, s, 2, &err), err);
    MUST(keyproc_watch(&err), err);
}

/* Key processes that answer the first request differently (their master
 * keys differ) do not start: the client says so, and does not wait for
 * ever on a key process that is still running. */
static void test_r15_keyprocs_that_disagree_do_not_start(void **state)
{
    struct kfx *k = *state;
    struct split s = {0};
    struct error err = {0};
    snprintf(s.other_ks, sizeof(s.other_ks), "%s/keystore2", k->as2.dir);
    MUST(vault_create(s.other_ks, &err), err);
    alarm(60);                      /* a hang fails the test */
    split_start(&s, k, "hello");
    assert_null(vault_open(k->ks, &err));
    assert_non_null(strstr(err.msg, "different answers to a hello"));
    assert_int_equal(keyproc_lost(), 1);
    keyproc_stop();
    alarm(0);
}

/* Key processes that disagree later (one has the TLS key, the other was
 * given none) stop serve, as the death of one does: SIGTERM, lost. */
static void test_r15_keyprocs_that_disagree_stop_serve(void **state)
{
    struct kfx *k = *state;
    struct split s = { .no_tls = 1 };
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);    /* the stop's SIGTERM */
    split_start(&s, k, "tls");
    struct error err = {0};
    struct vault *r = vault_open(k->ks, &err);
    if (r == NULL)
        fail_msg("remote vault_open: %s", err.msg);
    assert_null(vault_tls_key(k->tlskey, &err));
    assert_non_null(strstr(err.msg, "different answers to a TLS key"));
    struct timespec ts = { 30, 0 };
    assert_int_equal(sigtimedwait(&term, NULL, &ts), SIGTERM);
    assert_int_equal(keyproc_lost(), 1);
    struct secret *sec = secret_from("x", 1);
    unsigned char *blob = NULL;
    size_t n = 0;                   /* nothing is answered any more */
    assert_int_equal(vault_seal(r, "conn:x", sec, &blob, &n, &err), -1);
    secret_free(sec);
    vault_close(r);
    keyproc_stop();
}

/* A request that waits on a stopped key process, in a thread. */
struct stuck {
    struct vault *r;
    _Atomic pid_t tid;
    int rc;
};

static void *stuck_seal(void *arg)
{
    struct stuck *t = arg;
    struct error err = {0};
    struct secret *s = secret_from("waits", 5);
    unsigned char *blob = NULL;
    size_t n = 0;
    t->tid = (pid_t)syscall(SYS_gettid);
    t->rc = vault_seal(t->r, "conn:x", s, &blob, &n, &err);
    secret_free(s);
    free(blob);
    return NULL;
}

/* 1 when thread tid of this process is blocked in read(2). */
static int blocked_in_read(pid_t tid)
{
    char path[64], line[64] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    int got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    return got && strncmp(line, "0 ", 2) == 0;     /* read is call 0 */
}

static void test_r15_keyprocs_serve_at_once(void **state)
{
    struct kfx *k = *state;
    struct vault *r = start_keyprocs(k, 2);
    struct error err = {0};
    assert_int_equal(keyproc_count(), 2);
    pid_t first = keyproc_pid(0), second = keyproc_pid(1);
    assert_true(first > 0 && second > 0 && first != second);
    assert_int_equal(keyproc_pid(2), 0);
    /* loaded once, while both run: into both tables, one handle */
    EVP_PKEY *h = vault_key_load(r, CTX, k->blob, k->bloblen, &err);
    if (h == NULL)
        fail_msg("remote vault_key_load: %s", err.msg);
    /* the first stops with a request of another thread in it; should
     * the second not answer meanwhile, the alarm ends the test (a fail,
     * not a hang) */
    alarm(120);
    assert_int_equal(kill(first, SIGSTOP), 0);
    struct stuck t = { .r = r };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stuck_seal, &t), 0);
    for (int i = 0; i < 30000 && !(t.tid && blocked_in_read(t.tid)); i++)
        usleep(1000);
    assert_true(t.tid && blocked_in_read(t.tid));
    /* the second answers meanwhile, with the key the first was sent too */
    sign_verify(h, k->as2.alice.cert, AS2_SIG_PSS);
    encrypt_decrypt(h, k->as2.alice.cert, AS2_KT_RSA_OAEP_SHA256);
    unsigned char sig[VAULT_SIG_LEN];
    char id[VAULT_KEY_ID_LEN + 1];
    MUST(vault_audit_sign(r, "head", 4, sig, id, &err), err);
    MUST(vault_audit_verify(k->v, id, "head", 4, sig, &err), err);
    assert_true(blocked_in_read(t.tid));        /* still waiting */
    assert_int_equal(kill(first, SIGCONT), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(t.rc, 0);
    alarm(0);
    EVP_PKEY_free(h);
    vault_close(r);
    keyproc_stop();
    assert_int_equal(keyproc_lost(), 0);
    assert_int_equal(keyproc_count(), 0);
}

static void test_r15_keyproc_client_key_signs_refuses_decrypt(void **state)
{
    struct kfx *k = *state;
    struct vault *r = start_keyproc(k);
    client_key_checks(k, r);
    /* the sealed key never unseals through the key process */
    struct error err = {0};
    size_t n = 0;
    unsigned char *blob = seal_pem(k->v, k->as2.bob.key, CLIENT_CTX, &n);
    assert_null(vault_unseal(r, CLIENT_CTX, blob, n, &err));
    assert_non_null(strstr(err.msg, "does not leave the key process"));
    free(blob);
    vault_close(r);
    keyproc_stop();
}

/* Last: it fills this process's table of client keys. */
static void test_r15_client_keys_are_bounded(void **state)
{
    struct kfx *k = *state;
    struct error err = {0};
    int loaded = 0, refused = 0;
    for (int i = 0; i < 70; i++) {      /* one key sealed 70 times: 1 entry */
        size_t n = 0;
        unsigned char *blob = seal_pem(k->v, k->as2.bob.key, CLIENT_CTX, &n);
        EVP_PKEY *h = vault_client_key(k->v, "mtls", blob, n, &err);
        if (h == NULL)
            fail_msg("the same key sealed again: %s", err.msg);
        EVP_PKEY_free(h);
        free(blob);
    }
    for (int i = 0; i < 70; i++) {
        EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, "provider=default", "EC",
                                          "P-256");
        size_t n = 0;
        unsigned char *blob = seal_pem(k->v, key, CLIENT_CTX, &n);
        EVP_PKEY *h = vault_client_key(k->v, "mtls", blob, n, &err);
        if (h != NULL)
            loaded++;
        else if (strstr(err.msg, "client certificate keys already"))
            refused++;
        EVP_PKEY_free(h);
        EVP_PKEY_free(key);
        free(blob);
    }
    /* the bound is 64, of which one is bob's key of the earlier tests */
    assert_int_equal(loaded, 63);
    assert_int_equal(refused, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r15_handle_key_signs_and_decrypts_cms),
        cmocka_unit_test(test_r15_handle_key_refuses_other_contexts),
        cmocka_unit_test(test_r22_tls_handle_key_only_signs),
        cmocka_unit_test(test_r22_rsa_tls_handle_key_does_not_decrypt),
        cmocka_unit_test(test_r15_keyproc_remote_vault),
        cmocka_unit_test(test_r15_keyproc_payload_round_trip),
        cmocka_unit_test(test_r15_keyprocs_serve_at_once),
        cmocka_unit_test(test_r15_one_key_process_per_usable_cpu),
        cmocka_unit_test(test_r15_client_key_handle_signs_refuses_decrypt),
        cmocka_unit_test(test_r15_keyproc_client_key_signs_refuses_decrypt),
        cmocka_unit_test(test_r15_keyproc_death_is_noticed),
        cmocka_unit_test(test_r15_keyprocs_that_disagree_do_not_start),
        cmocka_unit_test(test_r15_keyprocs_that_disagree_stop_serve),
        cmocka_unit_test(test_r15_client_keys_are_bounded),
    };
    return cmocka_run_group_tests(tests, kfx_setup, kfx_teardown);
}
