/*
 * syslog.c - the transport of syslog notifications (syslog.h): a unix
 * datagram socket, UDP, TCP with octet-counting framing, or the same over
 * TLS (RFC 5425) with net/tls.c's client policy.
 *
 * Owns one socket per call (opened, written, closed). Must never log or
 * put the message into an error (it is the caller's text), block longer
 * than the timeout, or follow a proxy.
 */
#include "net/syslog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "net/tls.h"

#define SYSLOG_MAX (64 * 1024)

enum syslog_kind { SL_UNIX, SL_UDP, SL_TCP, SL_TLS };

struct syslog_target {
    enum syslog_kind kind;
    char path[108];             /* unix */
    char host[256], port[8];    /* udp, tcp */
};

static int syslog_parse(const char *t, struct syslog_target *out,
                        struct error *err)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(t, "unix:", 5) == 0) {
        out->kind = SL_UNIX;
        if (t[5] != '/' || strlen(t + 5) >= sizeof(out->path))
            return error_set(err, "'%s': a unix socket must be an absolute "
                             "path of at most %zu bytes", t,
                             sizeof(out->path) - 1);
        snprintf(out->path, sizeof(out->path), "%s", t + 5);
        return 0;
    }
    const char *hp;
    if (strncmp(t, "udp://", 6) == 0) {
        out->kind = SL_UDP;
        hp = t + 6;
    } else if (strncmp(t, "tcp://", 6) == 0) {
        out->kind = SL_TCP;
        hp = t + 6;
    } else if (strncmp(t, "tls://", 6) == 0) {
        out->kind = SL_TLS;
        hp = t + 6;
    } else {
        return error_set(err, "'%s' must be unix:/PATH, udp://HOST:PORT, "
                         "tcp://HOST:PORT or tls://HOST:PORT", t);
    }
    const char *colon = strrchr(hp, ':');
    const char *host = hp, *hend = colon;
    if (hp[0] == '[') {             /* [IPv6]:port */
        const char *rb = strchr(hp, ']');
        if (rb == NULL || rb[1] != ':')
            return error_set(err, "'%s': an IPv6 address goes in brackets, "
                             "then :PORT", t);
        host = hp + 1;
        hend = rb;
        colon = rb + 1;
    }
    char *end;
    errno = 0;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (colon == NULL || hend == host || errno || *end != '\0' ||
        end == colon + 1 || port < 1 || port > 65535 ||
        (size_t)(hend - host) >= sizeof(out->host))
        return error_set(err, "'%s' needs a host and a port (1-65535)", t);
    memcpy(out->host, host, (size_t)(hend - host));
    snprintf(out->port, sizeof(out->port), "%ld", port);
    if (strpbrk(out->host, "/@ \t"))
        return error_set(err, "'%s': the host has a character it may not",
                         t);
    return 0;
}

int net_syslog_check(const char *target, struct error *err)
{
    struct syslog_target t;
    return syslog_parse(target, &t, err);
}

/* Wait until fd is writable (connect done) within timeout_ms. */
static int syslog_wait(int fd, long timeout_ms, struct error *err,
                       const char *target)
{
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    int rc;
    while ((rc = poll(&p, 1, (int)timeout_ms)) < 0 && errno == EINTR)
        ;
    if (rc == 0)
        return error_set(err, "syslog %s: timeout", target);
    if (rc < 0)
        return error_errno(err, errno, "syslog %s", target);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr)
        return error_errno(err, soerr ? soerr : errno, "syslog %s: connect",
                           target);
    return 0;
}

/* All of buf, with the socket non-blocking, within timeout_ms each. */
static int syslog_write_all(int fd, const char *buf, size_t len,
                            long timeout_ms, struct error *err,
                            const char *target)
{
    while (len > 0) {
        ssize_t k = send(fd, buf, len, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (syslog_wait(fd, timeout_ms, err, target) < 0)
                return -1;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return error_errno(err, errno, "syslog %s: send", target);
        buf += k;
        len -= (size_t)k;
    }
    return 0;
}

static int syslog_connect(int fd, const struct sockaddr *sa, socklen_t sl,
                          long timeout_ms, struct error *err,
                          const char *target)
{
    if (connect(fd, sa, sl) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return error_errno(err, errno, "syslog %s: connect", target);
    return syslog_wait(fd, timeout_ms, err, target);
}

static int syslog_unix(const struct syslog_target *t, const char *msg,
                       size_t len, long timeout_ms, struct error *err,
                       const char *target)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return error_errno(err, errno, "syslog %s: socket", target);
    int rc = syslog_connect(fd, (struct sockaddr *)&sa, sizeof(sa),
                            timeout_ms, err, target);
    if (rc == 0)
        rc = syslog_write_all(fd, msg, len, timeout_ms, err, target);
    close(fd);
    return rc;
}

/* ---- RFC 5425: over TLS ---------------------------------------------------- */

/* Why the handshake or a write on ssl failed (rc its return). */
static int syslog_tls_fail(SSL *ssl, int rc, const char *stage,
                           struct error *err, const char *target)
{
    long v = SSL_get_verify_result(ssl);
    int e = SSL_get_error(ssl, rc);
    unsigned long q = ERR_get_error();
    ERR_clear_error();
    if (v != X509_V_OK)
        return error_set(err, "syslog %s: %s: the collector's certificate "
                         "is not trusted: %s", target, stage,
                         X509_verify_cert_error_string(v));
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return error_set(err, "syslog %s: %s: timeout", target, stage);
    return error_set(err, "syslog %s: %s: %s", target, stage,
                     q ? ERR_reason_error_string(q) : "connection closed");
}

/* SIGPIPE held for this thread while OpenSSL writes to the socket (its
 * writes are plain write(2): a collector gone away would kill the
 * process, the CLI's as much as serve); one raised meanwhile is taken
 * before the mask is restored. */
static void pipe_hold(sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, old);
}

static void pipe_release(const sigset_t *old)
{
    sigset_t s;
    struct timespec now = { 0, 0 };
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    if (!sigismember(old, SIGPIPE))
        while (sigtimedwait(&s, NULL, &now) == SIGPIPE)
            ;
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* The framed message over TLS on the connected fd: the policy of
 * net/tls.c, the collector's certificate checked against ca_file (NULL:
 * the system's trust store) and its name or address. */
static int syslog_tls(int fd, const struct syslog_target *t,
                      const char *ca_file, const char *frame, size_t flen,
                      const char *msg, size_t len, struct error *err,
                      const char *target)
{
    struct tls_client_opts o = { .ca_file = ca_file };
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int rc = ctx ? tls_client_configure(ctx, &o, err)
                 : error_set(err, "syslog %s: out of memory", target);
    if (rc == 0 && ((ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(ssl, fd)))
        rc = error_set(err, "syslog %s: out of memory", target);
    if (rc == 0)
        rc = tls_client_expect_host(ssl, t->host, err);
    sigset_t mask;
    pipe_hold(&mask);
    int r = rc == 0 ? SSL_connect(ssl) : 1;
    if (rc == 0 && r != 1)
        rc = syslog_tls_fail(ssl, r, "TLS handshake", err, target);
    if (rc == 0 && (r = SSL_write(ssl, frame, (int)flen)) <= 0)
        rc = syslog_tls_fail(ssl, r, "send", err, target);
    if (rc == 0 && (r = SSL_write(ssl, msg, (int)len)) <= 0)
        rc = syslog_tls_fail(ssl, r, "send", err, target);
    if (rc == 0 && SSL_shutdown(ssl) == 0) {
        /* ours is sent; read to theirs (or EOF, or the timeout), so that
         * nothing it sent (TLS 1.3 tickets) lies unread at close: a reset
         * then could make the collector lose the message */
        char sink[512];
        while (SSL_read(ssl, sink, sizeof(sink)) > 0)
            ;
    }
    pipe_release(&mask);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return rc;
}

/* The socket blocking from here, each read or write within timeout_ms
 * (OpenSSL's calls then fail as a timeout). */
static void syslog_blocking(int fd, long timeout_ms)
{
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* ---- by address ------------------------------------------------------------- */

static int syslog_inet(const struct syslog_target *t, const char *ca_file,
                       const char *msg, size_t len, long timeout_ms,
                       struct error *err, const char *target)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = t->kind == SL_UDP ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(t->host, t->port, &hints, &ai);
    if (g != 0 || ai == NULL)
        return error_set(err, "syslog %s: cannot resolve %s: %s", target,
                         t->host, gai_strerror(g));
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
                    SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? error_errno(err, errno, "syslog %s: socket", target)
             : syslog_connect(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms,
                              err, target);
    freeaddrinfo(ai);
    char head[24];          /* RFC 6587 / 5425 octet counting */
    int n = snprintf(head, sizeof(head), "%zu ", len);
    if (rc == 0 && t->kind == SL_TLS) {
        syslog_blocking(fd, timeout_ms);
        rc = syslog_tls(fd, t, ca_file, head, (size_t)n, msg, len, err,
                        target);
    } else if (rc == 0) {
        if (t->kind == SL_TCP)
            rc = syslog_write_all(fd, head, (size_t)n, timeout_ms, err,
                                  target);
        if (rc == 0)
            rc = syslog_write_all(fd, msg, len, timeout_ms, err, target);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int net_syslog_send(const char *target, const char *ca_file,
                    const char *msg, size_t len, long timeout_ms,
                    struct error *err)
{
    struct syslog_target t;
    if (syslog_parse(target, &t, err) < 0)
        return -1;
    if (len > SYSLOG_MAX)
        return error_set(err, "syslog %s: message over %d bytes", target,
                         SYSLOG_MAX);
    if (timeout_ms <= 0)
        timeout_ms = 5000;
    return t.kind == SL_UNIX ? syslog_unix(&t, msg, len, timeout_ms, err,
                                           target)
                             : syslog_inet(&t, ca_file, msg, len, timeout_ms,
                                           err, target);
}

int net_syslog_plain(const char *target)
{
    struct syslog_target t;
    struct error err = {0};
    struct in_addr a;
    if (syslog_parse(target, &t, &err) < 0 ||
        (t.kind != SL_UDP && t.kind != SL_TCP))
        return 0;
    if (strcmp(t.host, "localhost") == 0 || strcmp(t.host, "::1") == 0)
        return 0;
    return !(inet_pton(AF_INET, t.host, &a) == 1 &&
             (ntohl(a.s_addr) >> 24) == 127);
}
