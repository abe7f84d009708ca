/*
 * test_keyproto.c - the key process protocol (R15, R22): frame headers,
 * the exact field list of every request type, and the key process's loop
 * refusing (and hanging up on) unknown types, oversize frames and
 * malformed fields, over a real socketpair with keysrv_run in a thread;
 * the request that loads an http connector's client certificate key
 * (KP_KEY_CLIENT): its field limits, and a key that signs only and never
 * unseals to the caller.
 */
#include "testutil.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "util/secret.h"

#include "vault/keyhost.h"
#include "vault/keyproto.h"
#include "vault/vault.h"

#define MUST(call, err)                                                     \
    do {                                                                    \
        if ((call) != 0)                                                    \
            fail_msg("%s failed: %s", #call, (err).msg);                    \
    } while (0)

/* ---- frame building ---------------------------------------------------- */

struct frame {
    unsigned char b[KEYPROTO_HDR_LEN + 4096];
    size_t n;                       /* body bytes */
};

static void frame_field(struct frame *f, const void *p, size_t n)
{
    size_t off = f->n;
    assert_int_equal(keyproto_put(f->b + KEYPROTO_HDR_LEN,
                                  sizeof(f->b) - KEYPROTO_HDR_LEN, &off, p,
                                  n), 0);
    f->n = off;
}

static void frame_hdr(struct frame *f, uint32_t type, uint64_t id)
{
    struct keyproto_hdr h = { type, (uint32_t)f->n, id };
    keyproto_hdr_put(&h, f->b);
}

static int parse(uint32_t type, const struct frame *f)
{
    struct keyproto_field out[KEYPROTO_MAX_FIELDS];
    size_t nf = 0;
    struct error err = {0};
    return keyproto_parse(type, 0, f->b + KEYPROTO_HDR_LEN, f->n, out, &nf,
                          &err);
}

/* ---- headers ------------------------------------------------------------- */

static void test_r22_keyproto_header_round_trip(void **state)
{
    (void)state;
    unsigned char b[KEYPROTO_HDR_LEN];
    struct keyproto_hdr h = { KP_KEY_SIGN, 1234, 0x0102030405060708ULL }, g;
    struct error err = {0};
    keyproto_hdr_put(&h, b);
    assert_int_equal(keyproto_hdr_get(b, 0, &g, &err), 0);
    assert_int_equal(g.type, KP_KEY_SIGN);
    assert_int_equal(g.len, 1234);
    assert_true(g.id == 0x0102030405060708ULL);
}

static void test_r22_keyproto_header_refuses_unknown_and_oversize(void **state)
{
    (void)state;
    unsigned char b[KEYPROTO_HDR_LEN];
    struct keyproto_hdr g;
    struct error err = {0};
    struct keyproto_hdr unknown = { KP_TYPE_MAX + 1, 0, 1 };
    keyproto_hdr_put(&unknown, b);
    assert_int_equal(keyproto_hdr_get(b, 0, &g, &err), -1);
    assert_non_null(strstr(err.msg, "unknown request type"));
    struct keyproto_hdr zero = { 0, 0, 1 };
    keyproto_hdr_put(&zero, b);
    assert_int_equal(keyproto_hdr_get(b, 0, &g, &err), -1);
    struct keyproto_hdr big = { KP_SEAL, KEYPROTO_BODY_MAX + 1, 1 };
    keyproto_hdr_put(&big, b);
    assert_int_equal(keyproto_hdr_get(b, 0, &g, &err), -1);
    assert_non_null(strstr(err.msg, "over the limit"));
    /* a request type is not a reply, and a reply is not a request */
    struct keyproto_hdr ok = { KP_OK, 0, 1 };
    keyproto_hdr_put(&ok, b);
    assert_int_equal(keyproto_hdr_get(b, 0, &g, &err), -1);
    assert_int_equal(keyproto_hdr_get(b, 1, &g, &err), 0);
    struct keyproto_hdr req = { KP_SEAL, 0, 1 };
    keyproto_hdr_put(&req, b);
    assert_int_equal(keyproto_hdr_get(b, 1, &g, &err), -1);
}

/* ---- fields ---------------------------------------------------------------- */

static void test_r22_keyproto_exact_fields(void **state)
{
    (void)state;
    unsigned char hdr[KP_HEADER_LEN] = {0}, dkey[KP_DKEY_LEN] = {0};
    struct frame f = {0};
    frame_field(&f, "m1", 2);
    frame_field(&f, hdr, sizeof(hdr));
    frame_field(&f, dkey, sizeof(dkey));
    assert_int_equal(parse(KP_WRAP, &f), 0);

    struct frame short_hdr = {0};           /* a 91-byte header */
    frame_field(&short_hdr, "m1", 2);
    frame_field(&short_hdr, hdr, sizeof(hdr) - 1);
    frame_field(&short_hdr, dkey, sizeof(dkey));
    assert_int_equal(parse(KP_WRAP, &short_hdr), -1);

    struct frame missing = {0};
    frame_field(&missing, "m1", 2);
    frame_field(&missing, hdr, sizeof(hdr));
    assert_int_equal(parse(KP_WRAP, &missing), -1);

    struct frame extra = f;                 /* a fourth field */
    frame_field(&extra, "x", 1);
    assert_int_equal(parse(KP_WRAP, &extra), -1);

    struct frame trailing = f;              /* two stray bytes */
    trailing.b[KEYPROTO_HDR_LEN + trailing.n++] = 0;
    trailing.b[KEYPROTO_HDR_LEN + trailing.n++] = 0;
    assert_int_equal(parse(KP_WRAP, &trailing), -1);

    struct frame lying = f;                 /* a length past the end */
    keyproto_u32_put(5000, lying.b + KEYPROTO_HDR_LEN);
    assert_int_equal(parse(KP_WRAP, &lying), -1);

    struct frame hello = {0};
    assert_int_equal(parse(KP_HELLO, &hello), 0);
    frame_field(&hello, "", 0);
    assert_int_equal(parse(KP_HELLO, &hello), -1);
}

static void test_r15_keyproto_key_client_fields(void **state)
{
    (void)state;
    static unsigned char blob[KP_BLOB_OVERHEAD + 100];
    static char name[KP_CONN_NAME_MAX + 1];
    memset(name, 'n', sizeof(name));
    struct frame ok = {0}, noname = {0}, longname = {0}, short_blob = {0};
    frame_field(&ok, "mtls", 4);
    frame_field(&ok, blob, sizeof(blob));
    assert_int_equal(parse(KP_KEY_CLIENT, &ok), 0);
    struct frame extra = ok;                /* a third field */
    frame_field(&extra, "x", 1);
    assert_int_equal(parse(KP_KEY_CLIENT, &extra), -1);
    frame_field(&noname, "", 0);
    frame_field(&noname, blob, sizeof(blob));
    assert_int_equal(parse(KP_KEY_CLIENT, &noname), -1);
    frame_field(&longname, name, KP_CONN_NAME_MAX + 1);
    frame_field(&longname, blob, sizeof(blob));
    assert_int_equal(parse(KP_KEY_CLIENT, &longname), -1);
    frame_field(&short_blob, "mtls", 4);    /* shorter than any sealed value */
    frame_field(&short_blob, blob, KP_BLOB_OVERHEAD - 1);
    assert_int_equal(parse(KP_KEY_CLIENT, &short_blob), -1);
    /* the reply: a handle and a public key, nothing else */
    struct keyproto_field out[KEYPROTO_MAX_FIELDS];
    size_t nf = 0;
    struct error err = {0};
    struct frame rep = {0};
    unsigned char hd[KP_HANDLE_LEN] = {0, 0, 0, 1};
    frame_field(&rep, hd, sizeof(hd));
    frame_field(&rep, "spki", 4);
    assert_int_equal(keyproto_parse(KP_KEY_CLIENT, 1, rep.b +
                                    KEYPROTO_HDR_LEN, rep.n, out, &nf,
                                    &err), 0);
    assert_int_equal(nf, 2);
    frame_field(&rep, "pem", 3);
    assert_int_equal(keyproto_parse(KP_KEY_CLIENT, 1, rep.b +
                                    KEYPROTO_HDR_LEN, rep.n, out, &nf,
                                    &err), -1);
}

static void test_r22_keyproto_sign_sizes(void **state)
{
    (void)state;
    unsigned char h[KP_HANDLE_LEN] = {0, 0, 0, 1}, p[KP_PARAMS_LEN] = {0};
    unsigned char d[KP_DIGEST_MAX + 1] = {0};
    struct frame ok = {0}, big = {0}, tiny = {0};
    frame_field(&ok, h, sizeof(h));
    frame_field(&ok, p, sizeof(p));
    frame_field(&ok, d, 32);
    assert_int_equal(parse(KP_KEY_SIGN, &ok), 0);
    frame_field(&big, h, sizeof(h));
    frame_field(&big, p, sizeof(p));
    frame_field(&big, d, KP_DIGEST_MAX + 1);    /* not a digest */
    assert_int_equal(parse(KP_KEY_SIGN, &big), -1);
    frame_field(&tiny, h, sizeof(h));
    frame_field(&tiny, p, sizeof(p));
    frame_field(&tiny, d, KP_DIGEST_MIN - 1);
    assert_int_equal(parse(KP_KEY_SIGN, &tiny), -1);
}

static void test_r22_keyproto_params_checked(void **state)
{
    (void)state;
    unsigned char b[KP_PARAMS_LEN];
    struct keyproto_params p = { KP_MD_SHA256, KP_PAD_PSS, -1, KP_MD_SHA256 };
    struct keyproto_params g;
    struct error err = {0};
    keyproto_params_put(&p, b);
    assert_int_equal(keyproto_params_get(b, &g, &err), 0);
    assert_int_equal(g.saltlen, -1);
    p.md = KP_MD_MAX + 1;
    keyproto_params_put(&p, b);
    assert_int_equal(keyproto_params_get(b, &g, &err), -1);
    p.md = KP_MD_SHA1;
    p.pad = 77;
    keyproto_params_put(&p, b);
    assert_int_equal(keyproto_params_get(b, &g, &err), -1);
    p.pad = KP_PAD_PKCS1;
    p.saltlen = -5;
    keyproto_params_put(&p, b);
    assert_int_equal(keyproto_params_get(b, &g, &err), -1);
    assert_int_equal(keyproto_md_from_name("SHA2-256"), KP_MD_SHA256);
    assert_int_equal(keyproto_md_from_name("md5"), KP_MD_NONE);
}

/* ---- the key process's loop over a socketpair ----------------------------- */

struct srv {
    char dir[256], ks[320];
    struct vault *v;
    int sv[2];
    pthread_t t;
    int joined;                     /* the test already joined t */
    int rc;
    struct error err;
};

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    s->rc = keysrv_run(s->v, s->sv[1], NULL, 0, NULL, 1, &s->err);
    close(s->sv[1]);
    return NULL;
}

static int srv_setup(void **state)
{
    struct srv *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    test_tmpdir(s->dir, sizeof(s->dir));
    snprintf(s->ks, sizeof(s->ks), "%s/keystore", s->dir);
    struct error err = {0};
    assert_int_equal(vault_create(s->ks, &err), 0);
    s->v = vault_open(s->ks, &err);
    assert_non_null(s->v);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s->sv), 0);
    assert_int_equal(pthread_create(&s->t, NULL, srv_main, s), 0);
    *state = s;
    return 0;
}

static int srv_teardown(void **state)
{
    struct srv *s = *state;
    close(s->sv[0]);
    if (!s->joined)
        pthread_join(s->t, NULL);
    vault_close(s->v);
    test_rmtree(s->dir);
    free(s);
    return 0;
}

static void srv_send(struct srv *s, const struct frame *f)
{
    size_t n = KEYPROTO_HDR_LEN + f->n;
    assert_int_equal(write(s->sv[0], f->b, n), (ssize_t)n);
}

/* Read one reply: its header into h and its body into body (cap bytes).
 * -1 when the server hung up instead. */
static int srv_reply(struct srv *s, struct keyproto_hdr *h,
                     unsigned char *body, size_t cap)
{
    unsigned char b[KEYPROTO_HDR_LEN];
    struct error err = {0};
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = read(s->sv[0], b + got, sizeof(b) - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    assert_int_equal(keyproto_hdr_get(b, 1, h, &err), 0);
    assert_true(h->len <= cap);
    for (got = 0; got < h->len;) {
        ssize_t r = read(s->sv[0], body + got, h->len - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    return 0;
}

static void test_r22_keysrv_answers_hello_and_seal(void **state)
{
    struct srv *s = *state;
    struct frame f = {0};
    struct keyproto_hdr h;
    unsigned char body[4096];
    frame_hdr(&f, KP_HELLO, 7);
    srv_send(s, &f);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), 0);
    assert_int_equal(h.type, KP_OK);
    assert_true(h.id == 7);
    assert_int_equal(keyproto_u32_get(body), VAULT_KEY_ID_LEN);
    assert_memory_equal(body + 4, vault_active_id(s->v), VAULT_KEY_ID_LEN);

    struct frame u = {0};                   /* a profile key never unseals */
    unsigned char blob[60] = {1};
    frame_field(&u, "profile-key:abc", 15);
    frame_field(&u, blob, sizeof(blob));
    frame_hdr(&u, KP_UNSEAL, 8);
    srv_send(s, &u);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), 0);
    assert_int_equal(h.type, KP_ERR);
    body[h.len] = '\0';
    assert_non_null(strstr((char *)body + 4, "refused"));

    struct frame sign = {0};                /* no such key handle */
    unsigned char hd[KP_HANDLE_LEN] = {0, 0, 0, 9}, p[KP_PARAMS_LEN];
    unsigned char d[32] = {0};
    struct keyproto_params pr = { KP_MD_SHA256, KP_PAD_PKCS1, -1, 0 };
    keyproto_params_put(&pr, p);
    frame_field(&sign, hd, sizeof(hd));
    frame_field(&sign, p, sizeof(p));
    frame_field(&sign, d, sizeof(d));
    frame_hdr(&sign, KP_KEY_SIGN, 9);
    srv_send(s, &sign);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), 0);
    assert_int_equal(h.type, KP_ERR);
}

/* Send type with fields (name, blob) and read the reply into body. */
static void client_req(struct srv *s, uint32_t type, const char *name,
                       const unsigned char *blob, size_t n,
                       struct keyproto_hdr *h, unsigned char *body,
                       size_t cap)
{
    struct frame f = {0};
    frame_field(&f, name, strlen(name));
    frame_field(&f, blob, n);
    frame_hdr(&f, type, 11);
    srv_send(s, &f);
    assert_int_equal(srv_reply(s, h, body, cap), 0);
}

static void test_r15_keysrv_client_key_signs_only(void **state)
{
    struct srv *s = *state;
    struct error err = {0};
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, "provider=default", "EC",
                                      "P-256");
    assert_non_null(key);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
                                              NULL), 1);
    char *pem = NULL;
    long len = BIO_get_mem_data(b, &pem);
    struct secret *plain = secret_from(pem, (size_t)len);
    BIO_free(b);
    unsigned char *blob = NULL, body[4096];
    size_t n = 0;
    MUST(vault_seal(s->v, "connector:mtls:auth.key", plain, &blob, &n, &err),
         err);
    secret_free(plain);
    struct keyproto_hdr h;
    /* loaded: a handle and the public key of the sealed key */
    client_req(s, KP_KEY_CLIENT, "mtls", blob, n, &h, body, sizeof(body));
    assert_int_equal(h.type, KP_OK);
    struct keyproto_field r[KEYPROTO_MAX_FIELDS];
    size_t nf = 0;
    MUST(keyproto_parse(KP_KEY_CLIENT, 1, body, h.len, r, &nf, &err), err);
    const unsigned char *p = r[1].p;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)r[1].n);
    assert_non_null(pub);
    assert_int_equal(EVP_PKEY_eq(pub, key), 1);
    EVP_PKEY_free(pub);
    /* it may not decrypt */
    struct frame dec = {0};
    unsigned char pr[KP_PARAMS_LEN], ct[64] = {0};
    struct keyproto_params par = { KP_MD_NONE, KP_PAD_PKCS1, -1, 0 };
    keyproto_params_put(&par, pr);
    frame_field(&dec, r[0].p, KP_HANDLE_LEN);
    frame_field(&dec, pr, sizeof(pr));
    frame_field(&dec, "", 0);
    frame_field(&dec, ct, sizeof(ct));
    frame_hdr(&dec, KP_KEY_DECRYPT, 12);
    srv_send(s, &dec);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), 0);
    assert_int_equal(h.type, KP_ERR);
    body[h.len] = '\0';
    assert_non_null(strstr((char *)body + 4, "may not be used to decrypt"));
    /* it never unseals to the caller */
    client_req(s, KP_UNSEAL, "connector:mtls:auth.key", blob, n, &h, body,
               sizeof(body) - 1);
    assert_int_equal(h.type, KP_ERR);
    body[h.len] = '\0';
    assert_non_null(strstr((char *)body + 4, "does not leave the key "
                           "process"));
    /* under another connector's name the seal does not open */
    client_req(s, KP_KEY_CLIENT, "other", blob, n, &h, body, sizeof(body));
    assert_int_equal(h.type, KP_ERR);
    free(blob);
    EVP_PKEY_free(key);
}

/* A string of SSH wire form at *p (advanced), its length into *n. */
static const unsigned char *ssh_string(const unsigned char **p, size_t *n)
{
    *n = keyproto_u32_get(*p);
    const unsigned char *s = *p + 4;
    *p = s + *n;
    return s;
}

static void test_r15_keysrv_ssh_key_makes_ssh_signatures_only(void **state)
{
    struct srv *s = *state;
    struct error err = {0};
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, "provider=default", "ED25519");
    assert_non_null(key);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
                                              NULL), 1);
    char *pem = NULL;
    long len = BIO_get_mem_data(b, &pem);
    struct secret *plain = secret_from(pem, (size_t)len);
    BIO_free(b);
    unsigned char *blob = NULL, body[4096];
    size_t n = 0;
    MUST(vault_seal(s->v, "connector:sftp1:key_file", plain, &blob, &n, &err),
         err);
    secret_free(plain);
    /* loaded (no passphrase): a handle and the SSH public key */
    struct frame f = {0};
    struct keyproto_hdr h;
    frame_field(&f, "sftp1", 5);
    frame_field(&f, blob, n);
    frame_field(&f, "", 0);
    frame_hdr(&f, KP_KEY_SSH, 21);
    srv_send(s, &f);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), 0);
    assert_int_equal(h.type, KP_OK);
    struct keyproto_field r[KEYPROTO_MAX_FIELDS];
    size_t nf = 0, sn = 0;
    MUST(keyproto_parse(KP_KEY_SSH, 1, body, h.len, r, &nf, &err), err);
    unsigned char handle[KP_HANDLE_LEN], raw[32];
    size_t rawlen = sizeof(raw);
    memcpy(handle, r[0].p, sizeof(handle));
    const unsigned char *p = r[1].p;
    const unsigned char *name = ssh_string(&p, &sn);
    assert_int_equal(sn, 11);
    assert_memory_equal(name, "ssh-ed25519", 11);
    const unsigned char *pubraw = ssh_string(&p, &sn);
    assert_int_equal(EVP_PKEY_get_raw_public_key(key, raw, &rawlen), 1);
    assert_int_equal(sn, 32);
    assert_memory_equal(pubraw, raw, 32);
    /* an SSH signature that verifies with the key */
    static const unsigned char data[] = "session id and userauth request";
    struct frame sg = {0};
    unsigned char flags[4] = {0};
    frame_field(&sg, handle, sizeof(handle));
    frame_field(&sg, flags, sizeof(flags));
    frame_field(&sg, data, sizeof(data));
    frame_hdr(&sg, KP_SSH_SIGN, 22);
    srv_send(s, &sg);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), 0);
    assert_int_equal(h.type, KP_OK);
    MUST(keyproto_parse(KP_SSH_SIGN, 1, body, h.len, r, &nf, &err), err);
    p = r[0].p;
    name = ssh_string(&p, &sn);
    assert_memory_equal(name, "ssh-ed25519", 11);
    const unsigned char *sig = ssh_string(&p, &sn);
    assert_int_equal(sn, 64);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, key), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, 64, data, sizeof(data)), 1);
    EVP_MD_CTX_free(md);
    /* it makes no other signature */
    struct frame ks = {0};
    unsigned char pr[KP_PARAMS_LEN], d[32] = {0};
    struct keyproto_params par = { KP_MD_SHA256, KP_PAD_NONE, -1, 0 };
    keyproto_params_put(&par, pr);
    frame_field(&ks, handle, sizeof(handle));
    frame_field(&ks, pr, sizeof(pr));
    frame_field(&ks, d, sizeof(d));
    frame_hdr(&ks, KP_KEY_SIGN, 23);
    srv_send(s, &ks);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body) - 1), 0);
    assert_int_equal(h.type, KP_ERR);
    body[h.len] = '\0';
    assert_non_null(strstr((char *)body + 4, "may not be used to sign"));
    /* it never unseals to the caller, nor does a passphrase */
    client_req(s, KP_UNSEAL, "connector:sftp1:key_file", blob, n, &h, body,
               sizeof(body) - 1);
    assert_int_equal(h.type, KP_ERR);
    client_req(s, KP_UNSEAL, "connector:sftp1:key_passphrase_file", blob, n,
               &h, body, sizeof(body) - 1);
    assert_int_equal(h.type, KP_ERR);
    body[h.len] = '\0';
    assert_non_null(strstr((char *)body + 4, "does not leave the key "
                           "process"));
    free(blob);
    EVP_PKEY_free(key);
}

static void test_r22_keysrv_hangs_up_on_unknown_type(void **state)
{
    struct srv *s = *state;
    struct frame f = {0};
    struct keyproto_hdr h;
    unsigned char body[64];
    frame_hdr(&f, 99, 1);
    srv_send(s, &f);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), -1);
    pthread_join(s->t, NULL);
    s->joined = 1;
    assert_int_equal(s->rc, -1);
    assert_non_null(strstr(s->err.msg, "unknown request type 99"));
}

static void test_r22_keysrv_hangs_up_on_oversize_frame(void **state)
{
    struct srv *s = *state;
    struct frame f = {0};
    struct keyproto_hdr h = { KP_SEAL, KEYPROTO_BODY_MAX + 1, 2 };
    unsigned char body[64];
    keyproto_hdr_put(&h, f.b);
    srv_send(s, &f);                        /* the header alone */
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), -1);
    pthread_join(s->t, NULL);
    s->joined = 1;
    assert_int_equal(s->rc, -1);
    assert_non_null(strstr(s->err.msg, "over the limit"));
}

static void test_r22_keysrv_hangs_up_on_malformed_fields(void **state)
{
    struct srv *s = *state;
    struct frame f = {0};
    struct keyproto_hdr h;
    unsigned char body[64];
    frame_field(&f, "totp:a", 6);           /* seal: one field short */
    frame_hdr(&f, KP_SEAL, 3);
    srv_send(s, &f);
    assert_int_equal(srv_reply(s, &h, body, sizeof(body)), -1);
    pthread_join(s->t, NULL);
    s->joined = 1;
    assert_int_equal(s->rc, -1);
    assert_non_null(strstr(s->err.msg, "seal: field 2 is missing"));
}

/* ---- the rate limits (simulated time: no test waits) --------------------- */

/* Requests every step_ns for n of them, from 100 s on the clock: the
 * nanoseconds the bucket made them wait in all; *last_go when the last one
 * went (ns after the first). */
static long long bucket_waits(struct keysrv_bucket *b, long long step_ns,
                              int n, long long *last_go)
{
    long long waited = 0, t0 = 100LL * 1000000000LL, at = t0;
    for (int i = 0; i < n; i++, at += step_ns) {
        struct timespec t = { (time_t)(at / 1000000000LL),
                              (long)(at % 1000000000LL) };
        long long w = keysrv_bucket_take(b, &t);
        waited += w;
        *last_go = at + w - t0;
    }
    return waited;
}

/* An AS2 receiver makes two private-key operations per message with a
 * signed MDN (decrypt the content key, sign the MDN). At 1,500 messages a
 * second for ten seconds (3,000 operations a second: what one core of the
 * 2026-12-05 machine did of RSA-2048), none waits; the limit of 1,000 a
 * second held such a receiver at 500 messages a second. */
static void test_m4_key_ops_limit_does_not_hold_a_receiver_under_one_core(
    void **state)
{
    (void)state;
    struct keysrv_bucket b;
    struct timespec t0 = { 100, 0 };
    long long last = 0;
    keysrv_bucket_init(&b, KEYSRV_KEY_OPS_PER_S, &t0);
    assert_int_equal(bucket_waits(&b, 1000000000LL / 3000, 30000, &last), 0);
}

/* Beyond the limit requests wait (they are not refused) and go at the
 * rate: 20 seconds' worth sent at twice the rate go, after one second's
 * burst, in 19 seconds; long after, a request goes at once again. */
static void test_r22_key_ops_beyond_the_limit_wait(void **state)
{
    (void)state;
    struct keysrv_bucket b;
    struct timespec t0 = { 100, 0 }, later = { 200, 0 };
    long long last = 0;
    int rate = KEYSRV_KEY_OPS_PER_S;
    keysrv_bucket_init(&b, rate, &t0);
    assert_true(bucket_waits(&b, 1000000000LL / (2 * rate), 20 * rate,
                             &last) > 0);
    assert_true(last > 19000000000LL - 1000000 &&
                last < 19000000000LL + 1000000);
    assert_int_equal(keysrv_bucket_take(&b, &later), 0);
}

/* With n key processes each has 1/n of the limits, so together they keep
 * them. Two, each offered 3/4 of a limit for ten seconds, wait; each goes
 * at half the limit after its burst (half a second's worth), so both
 * together at most at the limit. One key process alone would let the same
 * load through without a wait. which: 0 the private-key operations'
 * bucket, 1 the requests'. */
static void share_keeps(int rate, int which)
{
    struct keysrv_bucket b[2][2];
    struct timespec t0 = { 100, 0 };
    int n = rate * 3 / 4 * 10;      /* each, in ten seconds */
    long long step = 1000000000LL * 10 / n, last[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        keysrv_limits_init(&b[i][0], &b[i][1], 2, &t0);
        assert_true(bucket_waits(&b[i][which], step, n, &last[i]) > 0);
    }
    long long expect = (long long)(n - rate / 2) * 1000000000LL / (rate / 2);
    for (int i = 0; i < 2; i++)
        assert_true(last[i] > expect - 1000000 && last[i] < expect + 1000000);
    assert_true((double)(2 * n - rate) / ((double)last[0] / 1e9) <=
                rate * 1.001);
    keysrv_limits_init(&b[0][0], &b[0][1], 1, &t0);
    assert_int_equal(bucket_waits(&b[0][which], step, n, &last[0]), 0);
}

static void test_r22_key_limits_are_shared_by_the_key_processes(void **state)
{
    (void)state;
    share_keeps(KEYSRV_KEY_OPS_PER_S, 0);
    share_keeps(KEYSRV_OPS_PER_S, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r22_keyproto_header_round_trip),
        cmocka_unit_test(test_r22_keyproto_header_refuses_unknown_and_oversize),
        cmocka_unit_test(test_r22_keyproto_exact_fields),
        cmocka_unit_test(test_r15_keyproto_key_client_fields),
        cmocka_unit_test(test_r22_keyproto_sign_sizes),
        cmocka_unit_test(test_r22_keyproto_params_checked),
        cmocka_unit_test(
            test_m4_key_ops_limit_does_not_hold_a_receiver_under_one_core),
        cmocka_unit_test(test_r22_key_ops_beyond_the_limit_wait),
        cmocka_unit_test(test_r22_key_limits_are_shared_by_the_key_processes),
        cmocka_unit_test_setup_teardown(test_r22_keysrv_answers_hello_and_seal,
                                        srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(
            test_r15_keysrv_ssh_key_makes_ssh_signatures_only, srv_setup,
            srv_teardown),
        cmocka_unit_test_setup_teardown(test_r15_keysrv_client_key_signs_only,
                                        srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_r22_keysrv_hangs_up_on_unknown_type,
                                        srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(
            test_r22_keysrv_hangs_up_on_oversize_frame, srv_setup,
            srv_teardown),
        cmocka_unit_test_setup_teardown(
            test_r22_keysrv_hangs_up_on_malformed_fields, srv_setup,
            srv_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
