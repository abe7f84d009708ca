/*
 * keyclient.c - the network process's side of the key processes (see
 * keyproc.h): one request at a time on each process's socketpair, replies
 * checked against the protocol's reply specs (keyproto.c); a watcher
 * thread that notices any key process's death and stops `wharf serve`.
 *
 * With several key processes (keyproc_start's n), a request goes to the
 * first one that is idle, or waits for one in turn. A request that loads
 * a key into the key table or asks for a handle (hello, profile, TLS,
 * client certificate and SSH keys) goes to all of them, in order, under
 * all their locks, so that every table holds the same keys under the same
 * handles; their replies must be the same bytes, else the key processes
 * disagree and serve stops (nothing was decided).
 *
 * It owns the socketpair ends, the liveness pipes' read ends, the key
 * processes' /proc status descriptors and the watcher thread
 * (keyproc_stop releases them), and each reply buffer until it is handed
 * to the caller. It must never hold a private key or a master key: only
 * handles, public keys, sealed blobs, and the plaintext its caller asked
 * for (an unsealed secret, a payload data key).
 */
#include "vault/keyproc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

/* One key process's connection. */
struct kc_chan {
    pthread_mutex_t lock;           /* one request in flight on it */
    int fd;                         /* socketpair end; -1: none */
    uint64_t next_id;
};

#define KC_CHAN_INIT { PTHREAD_MUTEX_INITIALIZER, -1, 0 }
_Static_assert(KEYPROC_MAX == 4, "one KC_CHAN_INIT per key process");

static struct {
    pthread_mutex_t lock;           /* the fields from n on */
    struct kc_chan chan[KEYPROC_MAX];
    atomic_int dead;                /* a key process went away */
    atomic_uint turn;               /* whose queue a caller joins when all
                                     * are busy */
    size_t n;                       /* key processes attached */
    int watch[KEYPROC_MAX];         /* liveness pipes, read ends */
    pid_t pid[KEYPROC_MAX];
    int status[KEYPROC_MAX];        /* their /proc/PID/status, or -1 */
    size_t failed;                  /* the first whose channel broke */
    int stopping;                   /* keyproc_stop runs */
    int ready;                      /* they answered their first request */
    int watching;                   /* the watcher thread exists */
    pthread_t watcher;
    char reason[ERROR_MSG_MAX];     /* why one could not start (its words) */
} kc = { .lock = PTHREAD_MUTEX_INITIALIZER,
         .chan = { KC_CHAN_INIT, KC_CHAN_INIT, KC_CHAN_INIT, KC_CHAN_INIT } };

int keyclient_active(void)
{
    return kc.chan[0].fd >= 0;
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

/* Read the reply to id on c: its header into h, its body into *body. */
static int kc_reply(struct kc_chan *c, uint64_t id, struct keyproto_hdr *h,
                    unsigned char **body, struct error *err)
{
    unsigned char hb[KEYPROTO_HDR_LEN];
    if (fd_read_all(c->fd, hb, sizeof(hb)) != 0)
        return -1;
    if (keyproto_hdr_get(hb, 1, h, err) != 0 || h->id != id)
        return error_set(err, "the key process answered out of turn");
    *body = malloc(h->len ? h->len : 1);
    if (*body == NULL)
        return error_set(err, "out of memory");
    return fd_read_all(c->fd, *body, h->len);
}

/* c's key process did not answer as it must (it died, broke the
 * protocol, or disagreed with the others): it is gone, and serve stops.
 * One that still runs is ended (EOF on its socket), so that its liveness
 * pipe closes and the watcher stops serve as on a death; at start, the
 * reason's reader (keyclient_hello) then does not wait for ever. c's
 * lock is held: the descriptor stays open until keyproc_stop. */
static int kc_gone(struct kc_chan *c, const struct error *why,
                   struct error *err)
{
    pthread_mutex_lock(&kc.lock);
    int first = !atomic_load(&kc.dead);
    if (first)
        kc.failed = (size_t)(c - kc.chan);
    atomic_store(&kc.dead, 1);
    pthread_mutex_unlock(&kc.lock);
    if (first && why->msg[0])
        log_error("key process (pid %d): %s",
                  (int)kc.pid[c - kc.chan], why->msg);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    error_set(err, "the key process is gone%s%s: wharf serve is stopping "
              "(restart it)", why->msg[0] ? ": " : "", why->msg);
    if (err != NULL)
        err->code = EPIPE;          /* not an answer: nothing was decided */
    return -1;
}

/* The exchange itself on c, whose lock the caller holds: the reply's
 * body into *buf (its length into *blen), its fields into r. */
static int kc_exchange(struct kc_chan *c, uint32_t type,
                       const struct keyproto_field *f, size_t nf,
                       struct keyproto_field *r, unsigned char **buf,
                       size_t *blen, struct error *err)
{
    size_t len = 0, nr = 0;
    *buf = NULL;
    if (c->fd < 0 || atomic_load(&kc.dead))
        return error_errno(err, EPIPE, "the key process is not running: "
                           "wharf serve is stopping (restart it)");
    uint64_t id = ++c->next_id;
    unsigned char *req = kc_frame(type, id, f, nf, &len);
    if (req == NULL)
        return error_set(err, "a request to the key process is too large");
    int io = fd_send_all(c->fd, req, len);
    OPENSSL_cleanse(req, len);      /* it may carry a secret to seal */
    free(req);
    struct keyproto_hdr h;
    struct error perr = {0};
    if (io != 0 || kc_reply(c, id, &h, buf, &perr) != 0)
        return kc_gone(c, &perr, err);
    *blen = h.len;
    if (h.type == KP_ERR) {
        if (keyproto_parse(type, 2, *buf, h.len, r, &nr, err) != 0)
            return -1;
        return error_set(err, "%.*s", (int)r[0].n, (const char *)r[0].p);
    }
    return keyproto_parse(type, 1, *buf, h.len, r, &nr, err);
}

/* A key process that is idle, else the next in turn; locked. */
static struct kc_chan *kc_take(void)
{
    for (size_t i = 0; i < kc.n; i++)
        if (pthread_mutex_trylock(&kc.chan[i].lock) == 0)
            return &kc.chan[i];
    struct kc_chan *c = &kc.chan[atomic_fetch_add(&kc.turn, 1) % kc.n];
    pthread_mutex_lock(&c->lock);
    return c;
}

/* Requests that every key process must answer, and answer alike: those
 * that load a key into its table or name a handle. */
static int kc_to_all(uint32_t type)
{
    return type == KP_HELLO || type == KP_KEY_LOAD || type == KP_KEY_TLS ||
           type == KP_KEY_CLIENT || type == KP_KEY_SSH;
}

/* What a request that goes to all of them asks, for the log. */
static const char *kc_all_what(uint32_t type)
{
    switch (type) {
    case KP_HELLO: return "hello";
    case KP_KEY_LOAD: return "profile key";
    case KP_KEY_TLS: return "TLS key";
    case KP_KEY_CLIENT: return "client certificate key";
    case KP_KEY_SSH: return "SSH key";
    default: return "key";
    }
}

/* type to every key process in order, under all their locks (taken in
 * order: a single request holds one lock only, so this cannot deadlock).
 * The first one's reply is the caller's; the others' must be the same
 * bytes, or the same refusal. */
static int kc_all(uint32_t type, const struct keyproto_field *f, size_t nf,
                  struct keyproto_field *r, unsigned char **buf,
                  struct error *err)
{
    size_t len0 = 0, i;
    int rc0 = 0, gone = 0, differ = 0;
    for (i = 0; i < kc.n; i++)
        pthread_mutex_lock(&kc.chan[i].lock);
    for (i = 0; i < kc.n && !gone && !differ; i++) {
        struct keyproto_field ri[KEYPROTO_MAX_FIELDS];
        struct error ei = {0};
        unsigned char *bi = NULL;
        size_t leni = 0;
        int rci = kc_exchange(&kc.chan[i], type, f, nf, i ? ri : r,
                              i ? &bi : buf, i ? &leni : &len0, &ei);
        gone = rci != 0 && ei.code == EPIPE;
        if (i == 0 || gone) {
            rc0 = rci;
            if (err != NULL && rci != 0)
                *err = ei;
        } else {
            differ = rci != rc0 || (rci == 0 && (leni != len0 ||
                                    memcmp(bi, *buf, leni) != 0));
        }
        free(bi);
    }
    for (size_t j = kc.n; j-- > 0;)
        pthread_mutex_unlock(&kc.chan[j].lock);
    if (!differ)
        return gone ? -1 : rc0;
    struct error why = {0};
    error_set(&why, "the key processes gave different answers to a %s "
              "request", kc_all_what(type));
    return kc_gone(&kc.chan[i - 1], &why, err);
}

int keyclient_call(uint32_t type, const struct keyproto_field *f, size_t nf,
                   struct keyproto_field *r, unsigned char **buf,
                   struct error *err)
{
    *buf = NULL;
    if (kc.n == 0)
        return error_errno(err, EPIPE, "the key process is not running: "
                           "wharf serve is stopping (restart it)");
    if (kc_to_all(type))
        return kc_all(type, f, nf, r, buf, err);
    size_t len = 0;
    struct kc_chan *c = kc_take();
    int rc = kc_exchange(c, type, f, nf, r, buf, &len, err);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void kc_read_reason(int fd);

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
    } else if (kc.n > 0 && atomic_load(&kc.dead)) {
        /* one could not start: wait for its reason and say that instead
         * (serve starts the watcher only after its sandbox: read here) */
        if (kc.watching) {
            pthread_join(kc.watcher, NULL);
            kc.watching = 0;
        } else {
            kc_read_reason(kc.watch[kc.failed]);
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

/* ---- the key processes' life ---------------------------------------------- */

/* Until EOF on fd: what a key process that cannot start writes (its
 * reason). */
static void kc_read_reason(int fd)
{
    size_t got = 0;
    char buf[256];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
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

/* Blocks until a key process ends (its end of its pipe closes). Unless
 * serve is stopping anyway, that stops serve: SIGTERM to ourselves, and
 * keyproc_lost() makes the exit status non-zero. */
static void *kc_watch(void *arg)
{
    (void)arg;
    struct pollfd p[KEYPROC_MAX];
    size_t ended = 0;
    for (size_t i = 0; i < kc.n; i++)
        p[i] = (struct pollfd){ .fd = kc.watch[i], .events = POLLIN };
    while (poll(p, kc.n, -1) < 0 && errno == EINTR)
        ;
    while (ended + 1 < kc.n && p[ended].revents == 0)
        ended++;
    kc_read_reason(kc.watch[ended]);
    pthread_mutex_lock(&kc.lock);
    int stopping = kc.stopping, ready = kc.ready;
    if (!stopping)
        atomic_store(&kc.dead, 1);
    pthread_mutex_unlock(&kc.lock);
    if (!stopping && ready) {       /* at start, the caller says why */
        log_error("the key process (pid %d) ended: wharf serve stops now, "
                  "finishing nothing new; start it again",
                  (int)kc.pid[ended]);
        kill(getpid(), SIGTERM);
    }
    return NULL;
}

int keyclient_attach(int fd, int watch, pid_t pid, struct error *err)
{
    if (kc.n == KEYPROC_MAX)
        return error_set(err, "at most %d key processes", KEYPROC_MAX);
    if (kc.n == 0) {
        atomic_store(&kc.dead, 0);
        kc.stopping = kc.ready = 0;
        kc.reason[0] = '\0';
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    kc.status[kc.n] = open(path, O_RDONLY | O_CLOEXEC); /* -1: no posture */
    kc.watch[kc.n] = watch;
    kc.pid[kc.n] = pid;
    kc.chan[kc.n].next_id = 0;
    kc.chan[kc.n].fd = fd;
    kc.n++;
    return 0;
}

void keyclient_forget(void)
{
    for (size_t i = 0; i < KEYPROC_MAX; i++)
        kc.chan[i].fd = kc.watch[i] = kc.status[i] = -1;
    kc.n = 0;
}

int keyproc_watch(struct error *err)
{
    if (kc.watching || kc.n == 0)
        return 0;
    if (pthread_create(&kc.watcher, NULL, kc_watch, NULL) != 0)
        return error_set(err, "cannot start the key process watcher");
    kc.watching = 1;
    return 0;
}

int keyproc_lost(void)
{
    pthread_mutex_lock(&kc.lock);
    int lost = atomic_load(&kc.dead) && !kc.stopping;
    pthread_mutex_unlock(&kc.lock);
    return lost;
}

size_t keyproc_count(void)
{
    return kc.chan[0].fd >= 0 ? kc.n : 0;
}

pid_t keyproc_pid(size_t i)
{
    return i < keyproc_count() ? kc.pid[i] : 0;
}

int keyproc_status(size_t i, char *buf, size_t n)
{
    if (i >= keyproc_count() || kc.status[i] < 0 || n == 0)
        return -1;
    ssize_t got = pread(kc.status[i], buf, n - 1, 0);  /* 0: read anew */
    if (got <= 0)
        return -1;
    buf[got] = '\0';
    return 0;
}

void keyproc_stop(void)
{
    pthread_mutex_lock(&kc.lock);
    kc.stopping = !atomic_load(&kc.dead);
    pthread_mutex_unlock(&kc.lock);
    for (size_t i = 0; i < kc.n; i++) {     /* each sees EOF and exits */
        pthread_mutex_lock(&kc.chan[i].lock);
        int fd = kc.chan[i].fd;
        kc.chan[i].fd = -1;
        pthread_mutex_unlock(&kc.chan[i].lock);
        if (fd >= 0)
            close(fd);
    }
    for (size_t i = 0; i < kc.n; i++)
        while (kc.pid[i] > 0 && waitpid(kc.pid[i], NULL, 0) < 0 &&
               errno == EINTR)
            ;
    if (kc.watching)
        pthread_join(kc.watcher, NULL);
    kc.watching = 0;
    for (size_t i = 0; i < kc.n; i++) {
        close(kc.watch[i]);
        if (kc.status[i] >= 0)
            close(kc.status[i]);
        kc.watch[i] = kc.status[i] = -1;
        kc.pid[i] = 0;
    }
    kc.n = 0;
}
