/*
 * syslog.c - the transport of syslog notifications (syslog.h): a unix
 * datagram socket, UDP, or TCP with octet-counting framing.
 *
 * Owns one socket per call (opened, written, closed). Must never log or
 * put the message into an error (it is the caller's text), block longer
 * than the timeout, or follow a proxy.
 */
#include "net/syslog.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SYSLOG_MAX (64 * 1024)

enum syslog_kind { SL_UNIX, SL_UDP, SL_TCP };

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
    } else {
        return error_set(err, "'%s' must be unix:/PATH, udp://HOST:PORT or "
                         "tcp://HOST:PORT", t);
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

static int syslog_inet(const struct syslog_target *t, const char *msg,
                       size_t len, long timeout_ms, struct error *err,
                       const char *target)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = t->kind == SL_TCP ? SOCK_STREAM : SOCK_DGRAM;
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
    if (rc == 0 && t->kind == SL_TCP) {
        char head[24];      /* RFC 6587 octet counting */
        int n = snprintf(head, sizeof(head), "%zu ", len);
        rc = syslog_write_all(fd, head, (size_t)n, timeout_ms, err, target);
    }
    if (rc == 0)
        rc = syslog_write_all(fd, msg, len, timeout_ms, err, target);
    if (fd >= 0)
        close(fd);
    return rc;
}

int net_syslog_send(const char *target, const char *msg, size_t len,
                    long timeout_ms, struct error *err)
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
                             : syslog_inet(&t, msg, len, timeout_ms, err,
                                           target);
}
