/*
 * keysrv.c - the key process's request loop (keyproc.h): read a frame,
 * check it (keyproto.c), rate-limit it, do it with the local vault and key
 * table, answer.
 *
 * It owns the request and reply buffers (static, wiped after each request)
 * and the list of TLS keys it was configured with. It must never answer a
 * request it was not configured for: an unknown frame or a malformed field
 * ends the connection (and so the process); an AS2 profile key never
 * unseals to the caller (only into the key table); a TLS key is handed out
 * only for a path loaded at start and only signs; an http connector's
 * client certificate key opens only into the key table and only signs; an
 * SFTP connector's SSH key (and its passphrase) opens only into the key
 * table and only makes SSH signatures; no reply ever carries a private key
 * or a master key.
 */
#include "vault/keyhost.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/secret.h"
#include "vault/keyproc.h"
#include "vault/vault_internal.h"

#define KEYSRV_TLS_MAX 4

struct keysrv_tls {
    const char *path;               /* borrowed from the caller */
    char error[ERROR_MSG_MAX];      /* why it did not load ("" if it did) */
    uint32_t handle;
    unsigned char *spki;            /* owned */
    size_t spkilen;
};

struct keysrv {
    struct vault *v;
    int fd;
    struct keysrv_tls tls[KEYSRV_TLS_MAX];
    size_t ntls;
    struct keysrv_bucket key_ops, ops;
    unsigned char req[KEYPROTO_HDR_LEN + KEYPROTO_BODY_MAX];
    unsigned char rep[KEYPROTO_HDR_LEN + KEYPROTO_BODY_MAX];
    size_t replen;                  /* body bytes in rep */
};

/* ---- rate limit --------------------------------------------------------- */

static long long keysrv_ns(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

void keysrv_bucket_init(struct keysrv_bucket *b, double rate,
                        const struct timespec *now)
{
    b->rate = b->tokens = rate;
    b->last = *now;
}

long long keysrv_bucket_take(struct keysrv_bucket *b,
                             const struct timespec *now)
{
    long long at = keysrv_ns(now), last = keysrv_ns(&b->last);
    if (at > last) {            /* refill up to now */
        b->tokens += (double)(at - last) / 1e9 * b->rate;
        if (b->tokens > b->rate)
            b->tokens = b->rate;    /* burst: one second's worth */
        last = at;
    }
    if (b->tokens < 1.0) {      /* go once the token is there */
        last += (long long)((1.0 - b->tokens) / b->rate * 1e9) + 1;
        b->tokens = 1.0;
    }
    b->tokens -= 1.0;
    b->last.tv_sec = (time_t)(last / 1000000000LL);
    b->last.tv_nsec = (long)(last % 1000000000LL);
    return last - at;           /* > 0: after waits already handed out */
}

void keysrv_limits_init(struct keysrv_bucket *key_ops,
                        struct keysrv_bucket *ops, size_t share,
                        const struct timespec *now)
{
    double part = share > 1 ? (double)share : 1.0;
    keysrv_bucket_init(key_ops, KEYSRV_KEY_OPS_PER_S / part, now);
    keysrv_bucket_init(ops, KEYSRV_OPS_PER_S / part, now);
}

static void keysrv_take(struct keysrv_bucket *b)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long wait = keysrv_bucket_take(b, &now);
    struct timespec ts = { (time_t)(wait / 1000000000),
                           (long)(wait % 1000000000) };
    while (wait > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- replies -------------------------------------------------------------- */

static int keysrv_put(struct keysrv *s, const void *p, size_t n)
{
    return keyproto_put(s->rep + KEYPROTO_HDR_LEN, KEYPROTO_BODY_MAX,
                        &s->replen, p, n);
}

/* A field as a NUL-terminated string of at most cap - 1 bytes without a
 * NUL inside, into out. */
static int keysrv_str(const struct keyproto_field *f, char *out, size_t cap,
                      const char *what, struct error *err)
{
    if (f->n >= cap || memchr(f->p, '\0', f->n) != NULL)
        return error_set(err, "refused: bad %s", what);
    memcpy(out, f->p, f->n);
    out[f->n] = '\0';
    return 0;
}

/* ---- the requests ------------------------------------------------------------ */

static int kr_hello(struct keysrv *s, const struct keyproto_field *f,
                    struct error *err)
{
    (void)f;
    (void)err;
    return keysrv_put(s, vault_active_id(s->v), VAULT_KEY_ID_LEN);
}

static int kr_seal(struct keysrv *s, const struct keyproto_field *f,
                   struct error *err)
{
    char ctx[KP_CONTEXT_MAX + 1];
    if (keysrv_str(&f[0], ctx, sizeof(ctx), "context", err) != 0)
        return -1;
    struct secret *plain = secret_from(f[1].p, f[1].n);
    unsigned char *blob = NULL;
    size_t n = 0;
    int rc = plain == NULL ? error_set(err, "out of memory")
           : vault_seal(s->v, ctx, plain, &blob, &n, err);
    secret_free(plain);
    if (rc == 0)
        rc = keysrv_put(s, blob, n);
    free(blob);
    return rc;
}

static int kr_unseal(struct keysrv *s, const struct keyproto_field *f,
                     struct error *err)
{
    char ctx[KP_CONTEXT_MAX + 1];
    if (keysrv_str(&f[0], ctx, sizeof(ctx), "context", err) != 0)
        return -1;
    if (keyhost_private_context(ctx))
        return error_set(err, "refused: a private key does not leave the "
                         "key process (%.64s)", ctx);
    struct secret *plain = vault_unseal(s->v, ctx, f[1].p, f[1].n, err);
    if (plain == NULL)
        return -1;
    int rc = keysrv_put(s, secret_data(plain), secret_len(plain));
    secret_free(plain);
    return rc;
}

static int kr_wrap(struct keysrv *s, const struct keyproto_field *f,
                   struct error *err)
{
    char msgid[KP_MSGID_MAX + 1];
    unsigned char hdr[KP_HEADER_LEN];
    if (keysrv_str(&f[0], msgid, sizeof(msgid), "message id", err) != 0)
        return -1;
    memcpy(hdr, f[1].p, sizeof(hdr));
    if (vault_payload_wrap(s->v, hdr, f[2].p, msgid, err) != 0)
        return -1;
    return keysrv_put(s, hdr, sizeof(hdr));
}

static int kr_unwrap(struct keysrv *s, const struct keyproto_field *f,
                     struct error *err)
{
    char msgid[KP_MSGID_MAX + 1];
    unsigned char hdr[KP_HEADER_LEN], dkey[KP_DKEY_LEN];
    if (keysrv_str(&f[0], msgid, sizeof(msgid), "message id", err) != 0)
        return -1;
    memcpy(hdr, f[1].p, sizeof(hdr));
    if (vault_payload_unwrap(s->v, hdr, msgid, dkey, err) != 0)
        return -1;
    int rc = keysrv_put(s, dkey, sizeof(dkey));
    OPENSSL_cleanse(dkey, sizeof(dkey));
    return rc;
}

static int kr_audit_sign(struct keysrv *s, const struct keyproto_field *f,
                         struct error *err)
{
    unsigned char sig[VAULT_SIG_LEN];
    char id[VAULT_KEY_ID_LEN + 1];
    if (vault_audit_sign(s->v, f[0].p, f[0].n, sig, id, err) != 0)
        return -1;
    return keysrv_put(s, id, VAULT_KEY_ID_LEN) == 0 &&
           keysrv_put(s, sig, sizeof(sig)) == 0 ? 0 : -1;
}

static int kr_audit_verify(struct keysrv *s, const struct keyproto_field *f,
                           struct error *err)
{
    char id[VAULT_KEY_ID_LEN + 1];
    if (keysrv_str(&f[0], id, sizeof(id), "audit key id", err) != 0)
        return -1;
    return vault_audit_verify(s->v, id, f[2].p, f[2].n, f[1].p, err);
}

static int keysrv_put_key(struct keysrv *s, uint32_t handle,
                          const unsigned char *spki, size_t n)
{
    unsigned char h[KP_HANDLE_LEN];
    keyproto_u32_put(handle, h);
    return keysrv_put(s, h, sizeof(h)) == 0 && keysrv_put(s, spki, n) == 0
           ? 0 : -1;
}

static int kr_key_load(struct keysrv *s, const struct keyproto_field *f,
                       struct error *err)
{
    char ctx[KP_CONTEXT_MAX + 1];
    uint32_t handle = 0;
    unsigned char *spki = NULL;
    size_t n = 0;
    if (keysrv_str(&f[0], ctx, sizeof(ctx), "context", err) != 0 ||
        keytab_load_sealed(s->v, ctx, f[1].p, f[1].n, &handle, &spki, &n,
                           err) != 0)
        return -1;
    int rc = keysrv_put_key(s, handle, spki, n);
    free(spki);
    return rc;
}

static int kr_key_client(struct keysrv *s, const struct keyproto_field *f,
                         struct error *err)
{
    char conn[KP_CONN_NAME_MAX + 1];
    uint32_t handle = 0;
    unsigned char *spki = NULL;
    size_t n = 0;
    if (keysrv_str(&f[0], conn, sizeof(conn), "connector name", err) != 0 ||
        keytab_load_client(s->v, conn, f[1].p, f[1].n, &handle, &spki, &n,
                           err) != 0)
        return -1;
    int rc = keysrv_put_key(s, handle, spki, n);
    free(spki);
    return rc;
}

static int kr_key_tls(struct keysrv *s, const struct keyproto_field *f,
                      struct error *err)
{
    char path[KP_PATH_MAX + 1];
    if (keysrv_str(&f[0], path, sizeof(path), "path", err) != 0)
        return -1;
    for (size_t i = 0; i < s->ntls; i++)
        if (strcmp(s->tls[i].path, path) == 0)
            return s->tls[i].error[0]
                   ? error_set(err, "%s", s->tls[i].error)
                   : keysrv_put_key(s, s->tls[i].handle, s->tls[i].spki,
                                    s->tls[i].spkilen);
    return error_set(err, "refused: the key process did not load a TLS key "
                     "from %.200s at its start (restart wharf serve after "
                     "changing tls_key)", path);
}

static int kr_key_sign(struct keysrv *s, const struct keyproto_field *f,
                       struct error *err)
{
    struct keyproto_params p;
    unsigned char sig[KP_SIG_MAX];
    size_t n = 0;
    keysrv_take(&s->key_ops);
    if (keyproto_params_get(f[1].p, &p, err) != 0 ||
        keytab_sign(keyproto_u32_get(f[0].p), &p, f[2].p, f[2].n, sig, &n,
                    err) != 0)
        return -1;
    return keysrv_put(s, sig, n);
}

static int kr_key_decrypt(struct keysrv *s, const struct keyproto_field *f,
                          struct error *err)
{
    struct keyproto_params p;
    unsigned char out[KP_CIPHER_MAX];
    size_t n = 0;
    keysrv_take(&s->key_ops);
    if (keyproto_params_get(f[1].p, &p, err) != 0 ||
        keytab_decrypt(keyproto_u32_get(f[0].p), &p, f[2].p, f[2].n, f[3].p,
                       f[3].n, out, &n, err) != 0)
        return -1;
    int rc = keysrv_put(s, out, n);
    OPENSSL_cleanse(out, sizeof(out));
    return rc;
}

static int kr_key_ssh(struct keysrv *s, const struct keyproto_field *f,
                      struct error *err)
{
    char conn[KP_CONN_NAME_MAX + 1];
    uint32_t handle = 0;
    unsigned char *pub = NULL;
    size_t n = 0;
    if (keysrv_str(&f[0], conn, sizeof(conn), "connector name", err) != 0 ||
        keytab_load_ssh(s->v, conn, f[1].p, f[1].n, f[2].p, f[2].n, &handle,
                        &pub, &n, err) != 0)
        return -1;
    int rc = keysrv_put_key(s, handle, pub, n);
    free(pub);
    return rc;
}

static int kr_ssh_sign(struct keysrv *s, const struct keyproto_field *f,
                       struct error *err)
{
    unsigned char sig[KP_SSH_SIG_MAX];
    size_t n = 0;
    keysrv_take(&s->key_ops);
    if (keytab_ssh_sign(keyproto_u32_get(f[0].p), keyproto_u32_get(f[1].p),
                        f[2].p, f[2].n, sig, &n, err) != 0)
        return -1;
    return keysrv_put(s, sig, n);
}

typedef int (*keysrv_fn)(struct keysrv *s, const struct keyproto_field *f,
                         struct error *err);

static const keysrv_fn keysrv_fns[KP_TYPE_MAX + 1] = {
    [KP_HELLO] = kr_hello, [KP_SEAL] = kr_seal, [KP_UNSEAL] = kr_unseal,
    [KP_WRAP] = kr_wrap, [KP_UNWRAP] = kr_unwrap,
    [KP_AUDIT_SIGN] = kr_audit_sign, [KP_AUDIT_VERIFY] = kr_audit_verify,
    [KP_KEY_LOAD] = kr_key_load, [KP_KEY_TLS] = kr_key_tls,
    [KP_KEY_SIGN] = kr_key_sign, [KP_KEY_DECRYPT] = kr_key_decrypt,
    [KP_KEY_CLIENT] = kr_key_client, [KP_KEY_SSH] = kr_key_ssh,
    [KP_SSH_SIGN] = kr_ssh_sign,
};

/* ---- the loop -------------------------------------------------------------- */

static int keysrv_read(int fd, unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return got == 0 && r == 0 ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

static int keysrv_write(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Do the request h (body in s->req) and send the reply. */
static int keysrv_answer(struct keysrv *s, const struct keyproto_hdr *h,
                         const struct keyproto_field *f)
{
    struct error err = {0};
    s->replen = 0;
    keysrv_take(&s->ops);
    struct keyproto_hdr r = { KP_OK, 0, h->id };
    if (keysrv_fns[h->type](s, f, &err) != 0) {
        r.type = KP_ERR;
        s->replen = 0;
        if (err.msg[0] == '\0')
            error_set(&err, "the key process could not do a %u request",
                      (unsigned)h->type);
        keysrv_put(s, err.msg, strlen(err.msg));
    }
    r.len = (uint32_t)s->replen;
    keyproto_hdr_put(&r, s->rep);
    int rc = keysrv_write(s->fd, s->rep, KEYPROTO_HDR_LEN + s->replen);
    OPENSSL_cleanse(s->rep, KEYPROTO_HDR_LEN + s->replen);
    OPENSSL_cleanse(s->req, KEYPROTO_HDR_LEN + h->len);
    return rc;
}

/* One request: 1 answered, 0 at a clean EOF, -1 on a broken peer. */
static int keysrv_one(struct keysrv *s, struct error *err)
{
    struct keyproto_hdr h;
    struct keyproto_field f[KEYPROTO_MAX_FIELDS];
    size_t nf = 0;
    int r = keysrv_read(s->fd, s->req, KEYPROTO_HDR_LEN);
    if (r <= 0)
        return r == 0 ? 0 : error_set(err, "the connection broke");
    if (keyproto_hdr_get(s->req, 0, &h, err) != 0)
        return -1;
    if (keysrv_read(s->fd, s->req + KEYPROTO_HDR_LEN, h.len) != 1)
        return error_set(err, "the connection broke inside a frame");
    if (keyproto_parse(h.type, 0, s->req + KEYPROTO_HDR_LEN, h.len, f, &nf,
                       err) != 0)
        return -1;
    if (keysrv_answer(s, &h, f) != 0)
        return error_set(err, "cannot answer: the connection broke");
    return 1;
}

static int keysrv_load_tls(struct keysrv *s, const char *const *paths,
                           size_t n, struct error *err)
{
    if (n > KEYSRV_TLS_MAX)
        return error_set(err, "too many TLS keys");
    for (size_t i = 0; i < n; i++) {
        struct keysrv_tls *t = &s->tls[s->ntls++];
        struct error e = {0};
        t->path = paths[i];
        if (keytab_load_file(paths[i], &t->handle, &t->spki, &t->spkilen,
                             &e) != 0)
            memcpy(t->error, e.msg, sizeof(t->error));
    }
    return 0;
}

static void keysrv_free(struct keysrv *s)
{
    for (size_t i = 0; i < s->ntls; i++)
        free(s->tls[i].spki);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

int keysrv_run(struct vault *v, int fd, const char *const *tls_paths,
               size_t n, const struct keyproc_confine *confine,
               size_t share, struct error *err)
{
    struct keysrv *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return error_set(err, "out of memory");
    s->v = v;
    s->fd = fd;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    keysrv_limits_init(&s->key_ops, &s->ops, share, &now);
    int rc = keysrv_load_tls(s, tls_paths, n, err);
    if (rc == 0 && confine != NULL && confine->fn(confine->arg, err) < 0) {
        keyproc_child_fail(err->msg);   /* the parent says why, once */
        rc = -2;
    }
    while (rc == 0 && (rc = keysrv_one(s, err)) == 1)
        rc = 0;
    keysrv_free(s);
    return rc;
}
