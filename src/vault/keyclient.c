/*
 * keyclient.c - the network process's side of the key process (see
 * keyproc.h): one request at a time over the socketpair, replies checked
 * against the protocol's reply specs (keyproto.c); a watcher thread that
 * notices the key process's death and stops `wharf serve`.
 *
 * It owns the socketpair end, the liveness pipe's read end, the key
 * process's /proc status descriptor and the watcher thread (keyproc_stop
 * releases them), and each reply buffer until it is
 * handed to the caller. It must never hold a private key or a master key:
 * only handles, public keys, sealed blobs, and the plaintext its caller
 * asked for (an unsealed secret, a payload data key).
 */
#include "vault/keyproc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/fdio.h"
#include "util/log.h"
#include "vault/keyhost.h"

static struct {
    pthread_mutex_t lock;           /* one request in flight */
    int fd;                         /* socketpair end; -1: no key process */
    int watch;                      /* liveness pipe, read end */
    pid_t pid;
    int status;                     /* its /proc/PID/status, or -1 */
    uint64_t next_id;
    int dead;                       /* the key process went away */
    int stopping;                   /* keyproc_stop runs */
    int ready;                      /* it answered its first request */
    int watching;                   /* the watcher thread exists */
    pthread_t watcher;
    char reason[ERROR_MSG_MAX];     /* why it could not start (its words) */
} kc = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .watch = -1,
        .status = -1 };

int keyclient_active(void)
{
    return kc.fd >= 0;
}

/* The request frame of type with fields f[0..nf), malloc'ed. */
static unsigned char *kc_frame(uint32_t type, uint64_t id,
                               const struct keyproto_field *f, size_t nf,
                               size_t *len)
{
    size_t body = 0;
    for (size_t i = 0; i < nf; i++)
        body += 4 + f[i].n;
    if (body > KEYPROTO_BODY_MAX)
        return NULL;
    unsigned char *buf = malloc(KEYPROTO_HDR_LEN + body);
    size_t off = KEYPROTO_HDR_LEN;
    if (buf == NULL)
        return NULL;
    for (size_t i = 0; i < nf; i++)
        keyproto_put(buf, KEYPROTO_HDR_LEN + body, &off, f[i].p, f[i].n);
    struct keyproto_hdr h = { type, (uint32_t)body, id };
    keyproto_hdr_put(&h, buf);
    *len = off;
    return buf;
}

/* Read the reply to id: its header into h, its body into *body. */
static int kc_reply(uint64_t id, struct keyproto_hdr *h, unsigned char **body,
                    struct error *err)
{
    unsigned char hb[KEYPROTO_HDR_LEN];
    if (fd_read_all(kc.fd, hb, sizeof(hb)) != 0)
        return -1;
    if (keyproto_hdr_get(hb, 1, h, err) != 0 || h->id != id)
        return error_set(err, "the key process answered out of turn");
    *body = malloc(h->len ? h->len : 1);
    if (*body == NULL)
        return error_set(err, "out of memory");
    return fd_read_all(kc.fd, *body, h->len);
}

/* The exchange itself; caller holds the lock. */
static int kc_exchange(uint32_t type, const struct keyproto_field *f,
                       size_t nf, struct keyproto_field *r,
                       unsigned char **buf, struct error *err)
{
    size_t len = 0, nr = 0;
    uint64_t id = ++kc.next_id;
    unsigned char *req = kc_frame(type, id, f, nf, &len);
    if (req == NULL)
        return error_set(err, "a request to the key process is too large");
    int io = fd_send_all(kc.fd, req, len);
    OPENSSL_cleanse(req, len);      /* it may carry a secret to seal */
    free(req);
    struct keyproto_hdr h;
    struct error perr = {0};
    if (io != 0 || kc_reply(id, &h, buf, &perr) != 0) {
        kc.dead = 1;
        error_set(err, "the key process is gone%s%s: wharf serve is "
                  "stopping (restart it)", perr.msg[0] ? ": " : "",
                  perr.msg);
        if (err != NULL)
            err->code = EPIPE;      /* not an answer: nothing was decided */
        return -1;
    }
    if (h.type == KP_ERR) {
        if (keyproto_parse(type, 2, *buf, h.len, r, &nr, err) != 0)
            return -1;
        return error_set(err, "%.*s", (int)r[0].n, (const char *)r[0].p);
    }
    return keyproto_parse(type, 1, *buf, h.len, r, &nr, err);
}

int keyclient_call(uint32_t type, const struct keyproto_field *f, size_t nf,
                   struct keyproto_field *r, unsigned char **buf,
                   struct error *err)
{
    *buf = NULL;
    pthread_mutex_lock(&kc.lock);
    int rc = kc.fd < 0 || kc.dead
             ? error_errno(err, EPIPE, "the key process is not running: "
                           "wharf serve is stopping (restart it)")
             : kc_exchange(type, f, nf, r, buf, err);
    pthread_mutex_unlock(&kc.lock);
    return rc;
}

static void kc_read_reason(void);

int keyclient_hello(char id[VAULT_KEY_ID_LEN + 1], struct error *err)
{
    struct keyproto_field r[1];
    unsigned char *buf = NULL;
    int rc = keyclient_call(KP_HELLO, NULL, 0, r, &buf, err);
    if (rc == 0) {
        memcpy(id, r[0].p, VAULT_KEY_ID_LEN);
        id[VAULT_KEY_ID_LEN] = '\0';
        pthread_mutex_lock(&kc.lock);
        kc.ready = 1;
        pthread_mutex_unlock(&kc.lock);
    } else if (kc.watch >= 0) {
        /* it could not start: wait for its reason and say that instead
         * (serve starts the watcher only after its sandbox: read here) */
        if (kc.watching) {
            pthread_join(kc.watcher, NULL);
            kc.watching = 0;
        } else {
            kc_read_reason();
        }
        if (kc.reason[0])
            error_set(err, "%s", kc.reason);
    }
    free(buf);
    return rc;
}

int keyclient_wrap(const char *msgid, unsigned char *hdr,
                   const unsigned char *dkey, struct error *err)
{
    struct keyproto_field f[3] = {
        { (const unsigned char *)msgid, strlen(msgid) },
        { hdr, KP_HEADER_LEN }, { dkey, KP_DKEY_LEN },
    }, r[1];
    unsigned char *buf = NULL;
    int rc = keyclient_call(KP_WRAP, f, 3, r, &buf, err);
    if (rc == 0)
        memcpy(hdr, r[0].p, KP_HEADER_LEN);
    free(buf);
    return rc;
}

int keyclient_unwrap(const char *msgid, const unsigned char *hdr,
                     unsigned char *dkey, struct error *err)
{
    struct keyproto_field f[2] = {
        { (const unsigned char *)msgid, strlen(msgid) },
        { hdr, KP_HEADER_LEN },
    }, r[1];
    unsigned char *buf = NULL;
    int rc = keyclient_call(KP_UNWRAP, f, 2, r, &buf, err);
    if (rc == 0) {
        memcpy(dkey, r[0].p, KP_DKEY_LEN);
        OPENSSL_cleanse((void *)r[0].p, KP_DKEY_LEN);
    }
    free(buf);
    return rc;
}

/* ---- the key process's life --------------------------------------------- */

/* Blocks until the key process ends (its end of the pipe closes). Unless
 * serve is stopping anyway, that stops serve: SIGTERM to ourselves, and
 * keyproc_lost() makes the exit status non-zero. */
/* Until EOF: what a key process that cannot start writes (its reason). */
static void kc_read_reason(void)
{
    size_t got = 0;
    char buf[256];
    for (;;) {
        ssize_t r = read(kc.watch, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t room = sizeof(kc.reason) - 1 - got;
        size_t take = (size_t)r < room ? (size_t)r : room;
        memcpy(kc.reason + got, buf, take);
        got += take;
    }
    kc.reason[got] = '\0';
}

static void *kc_watch(void *arg)
{
    (void)arg;
    kc_read_reason();
    pthread_mutex_lock(&kc.lock);
    int stopping = kc.stopping, ready = kc.ready;
    if (!stopping)
        kc.dead = 1;
    pthread_mutex_unlock(&kc.lock);
    if (!stopping && ready) {       /* at start, the caller says why */
        log_error("the key process (pid %d) ended: wharf serve stops now, "
                  "finishing nothing new; start it again",
                  (int)kc.pid);
        kill(getpid(), SIGTERM);
    }
    return NULL;
}

int keyclient_attach(int fd, int watch, pid_t pid, struct error *err)
{
    (void)err;
    kc.fd = fd;
    kc.watch = watch;
    kc.pid = pid;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    kc.status = open(path, O_RDONLY | O_CLOEXEC);  /* -1: no posture */
    kc.dead = kc.stopping = kc.ready = 0;
    kc.reason[0] = '\0';
    return 0;
}

int keyproc_watch(struct error *err)
{
    if (kc.watching || kc.watch < 0)
        return 0;
    if (pthread_create(&kc.watcher, NULL, kc_watch, NULL) != 0)
        return error_set(err, "cannot start the key process watcher");
    kc.watching = 1;
    return 0;
}

int keyproc_lost(void)
{
    pthread_mutex_lock(&kc.lock);
    int lost = kc.dead && !kc.stopping;
    pthread_mutex_unlock(&kc.lock);
    return lost;
}

pid_t keyproc_pid(void)
{
    return kc.fd >= 0 ? kc.pid : 0;
}

int keyproc_status(char *buf, size_t n)
{
    if (kc.status < 0 || n == 0)
        return -1;
    ssize_t got = pread(kc.status, buf, n - 1, 0);  /* 0: read anew */
    if (got <= 0)
        return -1;
    buf[got] = '\0';
    return 0;
}

void keyproc_stop(void)
{
    pthread_mutex_lock(&kc.lock);
    int fd = kc.fd;
    kc.stopping = !kc.dead;
    kc.fd = -1;
    pthread_mutex_unlock(&kc.lock);
    if (fd < 0)
        return;
    close(fd);                      /* the key process sees EOF and exits */
    if (kc.pid > 0)
        while (waitpid(kc.pid, NULL, 0) < 0 && errno == EINTR)
            ;
    if (kc.watching)
        pthread_join(kc.watcher, NULL);
    close(kc.watch);
    kc.watch = -1;
    if (kc.status >= 0)
        close(kc.status);
    kc.status = -1;
    kc.watching = 0;
    kc.pid = 0;
}
