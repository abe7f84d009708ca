/*
 * ssh_agent.c - the in-process ssh-agent for SFTP public-key
 * authentication (see ssh_agent.h).
 *
 * Owns: the agent's listening socket and the folder fd it was made in
 * (a folder of its own when not given one), the thread that answers it,
 * and the armed identity (borrowed from the caller of net_ssh_agent_arm).
 * The protocol part (net_ssh_agent_answer) is a pure function of the
 * request, fuzzed by tests/fuzz/fuzz_ssh_agent.c.
 *
 * The socket's path goes through /proc/self/fd/N/ (N: the folder's fd),
 * so a long data dir path never exceeds sun_path, and the name means
 * something only inside this process. Connections are answered only when
 * SO_PEERCRED says they come from this process (libssh2 in one of its
 * threads); one at a time, each with a 30 s limit on every read and write.
 *
 * Answers: REQUEST_IDENTITIES (the armed key, or none), SIGN_REQUEST for
 * the armed key (anything else: SSH_AGENT_FAILURE). Never: add, remove,
 * lock or list keys beyond the armed one; sign for a key not armed; log or
 * keep what it signed; answer another process.
 */
#include "net/ssh_agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/fdio.h"
#include "util/log.h"

#define AGENT_SOCK "ssh-agent.sock"
#define AGENT_MSG_MAX (16 * 1024)       /* a request or a reply */
#define AGENT_IO_S 30

/* draft-miller-ssh-agent message numbers */
#define AGENT_FAILURE 5
#define AGENTC_REQUEST_IDENTITIES 11
#define AGENT_IDENTITIES_ANSWER 12
#define AGENTC_SIGN_REQUEST 13
#define AGENT_SIGN_RESPONSE 14

static struct {
    pthread_mutex_t lock;       /* everything below */
    pthread_mutex_t turn;       /* held by the armed handshake */
    int fd;                     /* listening socket, -1 */
    int dirfd;                  /* the folder the socket is in, -1 */
    int running;                /* the thread runs */
    pthread_t thread;
    char own_dir[PATH_MAX];     /* a folder of our own, or "" */
    const struct net_ssh_signer *armed;
} agent = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, -1, -1,
            0, 0, "", NULL };

/* ---- the protocol ------------------------------------------------------- */

struct wire {
    const unsigned char *p;
    size_t n;
};

static int wire_u32(struct wire *w, uint32_t *v)
{
    if (w->n < 4)
        return -1;
    *v = (uint32_t)w->p[0] << 24 | (uint32_t)w->p[1] << 16 |
         (uint32_t)w->p[2] << 8 | w->p[3];
    w->p += 4;
    w->n -= 4;
    return 0;
}

static int wire_string(struct wire *w, const unsigned char **s, size_t *len)
{
    uint32_t n;
    if (wire_u32(w, &n) != 0 || n > w->n)
        return -1;
    *s = w->p;
    *len = n;
    w->p += n;
    w->n -= n;
    return 0;
}

static void put_u32(unsigned char *out, uint32_t v)
{
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

/* A reply: type, then the strings a[0..n) (each with its length). */
static int reply_make(unsigned char type, const unsigned char *const *a,
                      const size_t *alen, size_t n, int count,
                      unsigned char **out, size_t *olen)
{
    size_t len = 1 + (count >= 0 ? 4 : 0);
    for (size_t i = 0; i < n; i++)
        len += 4 + alen[i];
    unsigned char *r = malloc(len), *p = r;
    if (r == NULL)
        return -1;
    *p++ = type;
    if (count >= 0) {
        put_u32(p, (uint32_t)count);
        p += 4;
    }
    for (size_t i = 0; i < n; i++) {
        put_u32(p, (uint32_t)alen[i]);
        memcpy(p + 4, a[i], alen[i]);
        p += 4 + alen[i];
    }
    *out = r;
    *olen = len;
    return 0;
}

static int reply_failure(unsigned char **out, size_t *olen)
{
    return reply_make(AGENT_FAILURE, NULL, NULL, 0, -1, out, olen);
}

static int answer_identities(const struct net_ssh_signer *s,
                             unsigned char **out, size_t *olen)
{
    static const unsigned char comment[] = "wharf";
    const unsigned char *a[2] = { s ? s->pub : NULL, comment };
    size_t alen[2] = { s ? s->publen : 0, sizeof(comment) - 1 };
    return reply_make(AGENT_IDENTITIES_ANSWER, a, alen, s ? 2 : 0,
                      s ? 1 : 0, out, olen);
}

/* The agent flags the signed data asks for: a client that names
 * rsa-sha2-256 or -512 in its USERAUTH_REQUEST but sends flags 0 (older
 * libssh2 agent code) gets that algorithm's signature, not SHA-1: the
 * algorithm named in the data (RFC 4252 7: session id, 50, user,
 * service, "publickey", TRUE, algorithm, key) wins over flags 0. */
static uint32_t sign_flags(const unsigned char *data, size_t n, uint32_t flags)
{
    struct wire w = { data, n };
    const unsigned char *p;
    size_t len;
    if (flags != 0 || wire_string(&w, &p, &len) != 0 || w.n < 1 ||
        w.p[0] != 50)
        return flags;
    w.p++;
    w.n--;
    for (int i = 0; i < 3; i++)     /* user, service, method */
        if (wire_string(&w, &p, &len) != 0)
            return flags;
    if (w.n < 1 || len != 9 || memcmp(p, "publickey", 9) != 0)
        return flags;
    w.p++;
    w.n--;
    if (wire_string(&w, &p, &len) != 0 || len != 12)
        return flags;
    return memcmp(p, "rsa-sha2-256", 12) == 0 ? 0x02
         : memcmp(p, "rsa-sha2-512", 12) == 0 ? 0x04 : flags;
}

static int answer_sign(const struct net_ssh_signer *s, struct wire *w,
                       unsigned char **out, size_t *olen)
{
    const unsigned char *blob, *data;
    size_t bn, dn;
    uint32_t flags;
    if (wire_string(w, &blob, &bn) != 0 || wire_string(w, &data, &dn) != 0 ||
        wire_u32(w, &flags) != 0 || w->n != 0 || s == NULL ||
        bn != s->publen || memcmp(blob, s->pub, bn) != 0 || dn == 0)
        return reply_failure(out, olen);
    unsigned char *sig = NULL;
    size_t sn = 0;
    struct error err = {0};
    if (s->sign(s->ctx, sign_flags(data, dn, flags), data, dn, &sig, &sn,
                &err) != 0) {
        log_warn("ssh agent: no signature: %s", err.msg);
        return reply_failure(out, olen);
    }
    const unsigned char *a[1] = { sig };
    int rc = reply_make(AGENT_SIGN_RESPONSE, a, &sn, 1, -1, out, olen);
    free(sig);
    return rc;
}

int net_ssh_agent_answer(const struct net_ssh_signer *s,
                         const unsigned char *req, size_t n,
                         unsigned char **reply, size_t *rlen)
{
    struct wire w = { req + (n > 0), n > 0 ? n - 1 : 0 };
    if (n == 1 && req[0] == AGENTC_REQUEST_IDENTITIES)
        return answer_identities(s, reply, rlen);
    if (n > 0 && req[0] == AGENTC_SIGN_REQUEST)
        return answer_sign(s, &w, reply, rlen);
    return reply_failure(reply, rlen);
}

/* ---- the socket --------------------------------------------------------- */

/* One request and its answer on connection c: 0, or -1 to hang up. */
static int agent_exchange(int c)
{
    unsigned char hdr[4], *req = NULL, *reply = NULL;
    size_t rlen = 0;
    if (fd_read_all(c, hdr, 4) != 0)
        return -1;
    uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
                 (uint32_t)hdr[2] << 8 | hdr[3];
    if (n == 0 || n > AGENT_MSG_MAX || (req = malloc(n)) == NULL)
        return -1;
    int rc = fd_read_all(c, req, n);
    if (rc == 0) {
        pthread_mutex_lock(&agent.lock);
        rc = net_ssh_agent_answer(agent.armed, req, n, &reply, &rlen);
        pthread_mutex_unlock(&agent.lock);
    }
    free(req);
    if (rc == 0) {
        put_u32(hdr, (uint32_t)rlen);
        rc = fd_send_all(c, hdr, 4) == 0 && fd_send_all(c, reply, rlen) == 0
             ? 0 : -1;
    }
    free(reply);
    return rc;
}

/* Whether connection c comes from this process. */
static int agent_peer_is_us(int c)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    return getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
           cred.pid == getpid();
}

static void agent_serve(int c)
{
    struct timeval tv = { AGENT_IO_S, 0 };
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (!agent_peer_is_us(c)) {
        log_warn("ssh agent: refused a connection from another process");
        return;
    }
    while (agent_exchange(c) == 0)
        ;
}

static void *agent_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (c < 0)
            break;                  /* shut down: stop */
        agent_serve(c);
        close(c);
    }
    return NULL;
}

/* At exit: a folder of our own goes (the thread may still be in accept). */
static void agent_remove_at_exit(void)
{
    if (agent.own_dir[0] == '\0')
        return;
    char sock[PATH_MAX + 32];
    snprintf(sock, sizeof(sock), "%s/%s", agent.own_dir, AGENT_SOCK);
    unlink(sock);
    rmdir(agent.own_dir);
}

/* A new private folder for the socket, its path into agent.own_dir. */
static int agent_own_dir(struct error *err)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(agent.own_dir, sizeof(agent.own_dir), "%s/wharf-agent.XXXXXX",
             tmp && *tmp == '/' ? tmp : "/tmp");
    if (mkdtemp(agent.own_dir) == NULL) {
        agent.own_dir[0] = '\0';
        return error_errno(err, errno, "ssh agent: cannot make a folder");
    }
    static int once;
    if (!once++)
        atexit(agent_remove_at_exit);
    return 0;
}

/* The listening socket in folder dirfd, named through /proc/self/fd. */
static int agent_listen(int dirfd, char *path, size_t cap, struct error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(path, cap, "/proc/self/fd/%d/%s", dirfd, AGENT_SOCK);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlinkat(dirfd, AGENT_SOCK, 0);     /* a previous run's */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_errno(err, errno, "ssh agent: socket");
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        fchmodat(dirfd, AGENT_SOCK, S_IRUSR | S_IWUSR, 0) != 0 ||
        listen(fd, 8) != 0) {
        error_errno(err, errno, "ssh agent: cannot listen on %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

static int agent_start_locked(const char *dir, struct error *err)
{
    if (agent.fd >= 0)
        return 0;
    if (dir == NULL && agent_own_dir(err) != 0)
        return -1;
    const char *d = dir ? dir : agent.own_dir;
    char path[64];
    agent.dirfd = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (agent.dirfd < 0) {
        error_errno(err, errno, "ssh agent: cannot open %s", d);
    } else if ((agent.fd = agent_listen(agent.dirfd, path, sizeof(path),
                                        err)) >= 0 &&
               setenv("SSH_AUTH_SOCK", path, 1) == 0) {
        return 0;
    }
    if (agent.fd >= 0)
        close(agent.fd);
    if (agent.dirfd >= 0)
        close(agent.dirfd);
    agent.fd = agent.dirfd = -1;
    if (agent.own_dir[0])
        rmdir(agent.own_dir);
    agent.own_dir[0] = '\0';
    return -1;
}

int net_ssh_agent_start(const char *dir, struct error *err)
{
    pthread_mutex_lock(&agent.lock);
    int rc = agent_start_locked(dir, err);
    pthread_mutex_unlock(&agent.lock);
    return rc;
}

void net_ssh_agent_stop(void)
{
    pthread_mutex_lock(&agent.lock);
    int running = agent.running;
    if (agent.fd >= 0)
        shutdown(agent.fd, SHUT_RDWR);  /* accept() returns: the thread ends */
    pthread_mutex_unlock(&agent.lock);
    if (running)
        pthread_join(agent.thread, NULL);
    pthread_mutex_lock(&agent.lock);
    if (agent.fd >= 0) {
        close(agent.fd);
        unlinkat(agent.dirfd, AGENT_SOCK, 0);
        close(agent.dirfd);
    }
    if (agent.own_dir[0])
        rmdir(agent.own_dir);
    agent.own_dir[0] = '\0';
    agent.fd = agent.dirfd = -1;
    agent.running = 0;
    pthread_mutex_unlock(&agent.lock);
}

/* The agent and its thread, running (agent.lock held). */
static int agent_ready(struct error *err)
{
    if (agent_start_locked(NULL, err) != 0)
        return -1;
    if (agent.running)
        return 0;
    int rc = pthread_create(&agent.thread, NULL, agent_main,
                            (void *)(intptr_t)agent.fd);
    if (rc != 0)
        return error_errno(err, rc, "ssh agent: cannot start its thread");
    agent.running = 1;
    return 0;
}

int net_ssh_agent_arm(const struct net_ssh_signer *s, struct error *err)
{
    pthread_mutex_lock(&agent.turn);
    pthread_mutex_lock(&agent.lock);
    int rc = agent_ready(err);
    if (rc == 0)
        agent.armed = s;
    pthread_mutex_unlock(&agent.lock);
    if (rc != 0)
        pthread_mutex_unlock(&agent.turn);
    return rc;
}

void net_ssh_agent_disarm(void)
{
    pthread_mutex_lock(&agent.lock);
    agent.armed = NULL;
    pthread_mutex_unlock(&agent.lock);
    pthread_mutex_unlock(&agent.turn);
}
