/*
 * keyproc.c - starting the key processes (keyproc.h): for each, the
 * socketpair, the liveness pipe, the fork, and what the child does before
 * it serves.
 *
 * It owns the two descriptors of each pair until they are handed to the
 * child's main or to keyclient.c. It must never run the child's code in
 * the parent, nor let the child keep a descriptor the parent's network
 * side uses (every one but the child's ends is closed in the child: the
 * parent opened nothing else yet, and all of Wharf's fds are O_CLOEXEC,
 * but the child does not exec, so it closes them itself).
 */
#include "vault/keyproc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/cpus.h"
#include "util/log.h"
#include "vault/keyhost.h"

/* In the child: close every descriptor above stderr but keep1 and keep2. */
static void keyproc_close_others(int keep1, int keep2)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end = NULL;
        long fd = strtol(e->d_name, &end, 10);
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || *end != '\0')
            continue;
        if (fd > 2 && fd != self && fd != keep1 && fd != keep2)
            close((int)fd);
    }
    closedir(d);
}

static int child_alive = -1;       /* in the child: the liveness pipe */
static size_t child_share = 1;     /* in the child: key processes started */

void keyproc_child_fail(const char *msg)
{
    size_t n = strnlen(msg, ERROR_MSG_MAX - 1);
    while (child_alive >= 0 && n > 0) {
        ssize_t w = write(child_alive, msg, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        msg += w;
        n -= (size_t)w;
    }
}

static void keyproc_child(keyproc_main child, void *arg, int fd, int alive,
                          size_t n)
{
    child_alive = alive;
    child_share = n;
    keyproc_close_others(fd, alive);
    keyclient_forget();
    prctl(PR_SET_NAME, "wharf-keys", 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() == 1)             /* the parent died before the prctl */
        _exit(1);
    int rc = child(arg, fd);
    close(fd);
    close(alive);                   /* the parent's watcher sees EOF */
    exit(rc);
}

/* Fork one key process of n. 0, or -1 with err. */
static int keyproc_fork(keyproc_main child, void *arg, size_t n,
                        struct error *err)
{
    int sv[2], pw[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return error_errno(err, errno, "cannot create the key process's "
                           "socket");
    if (pipe2(pw, O_CLOEXEC) != 0) {
        close(sv[0]);
        close(sv[1]);
        return error_errno(err, errno, "cannot create the key process's "
                           "pipe");
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        close(pw[0]);
        keyproc_child(child, arg, sv[1], pw[1], n);
    }
    close(sv[1]);
    close(pw[1]);
    if (pid < 0) {
        close(sv[0]);
        close(pw[0]);
        return error_errno(err, errno, "cannot start the key process (fork)");
    }
    return keyclient_attach(sv[0], pw[0], pid, err);
}

int keyproc_start(keyproc_main child, void *arg, size_t n, struct error *err)
{
    if (n < 1 || n > KEYPROC_MAX)
        return error_set(err, "%zu key processes: 1 to %d", n, KEYPROC_MAX);
    for (size_t i = 0; i < n; i++) {
        if (keyproc_fork(child, arg, n, err) < 0) {
            keyproc_stop();         /* the ones already started */
            return -1;
        }
    }
    return 0;
}

size_t keyproc_default_count(void)
{
    size_t cpus = cpus_usable();
    return cpus > KEYPROC_MAX ? KEYPROC_MAX : cpus;
}

int keyproc_serve(struct vault *v, const char *const *tls_paths, size_t n,
                  const struct keyproc_confine *confine, int fd)
{
    struct error err = {0};
    int rc = keysrv_run(v, fd, tls_paths, n, confine, child_share, &err);
    if (rc == -1)                   /* -2: serve reports it */
        log_error("key process: %s", err.msg);
    keytab_clear();
    return rc == 0 ? 0 : 1;
}
