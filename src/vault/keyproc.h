/*
 * keyproc.h - the key process of `wharf serve` (R15, R22), after OpenBSD
 * relayd's "ca" process: a child forked before any listener or parser
 * runs, holding the keystore (master keys, audit signing keys) and every
 * private key (AS2 profile keys, the TLS listener key, http connectors'
 * client certificate keys). The network-facing
 * process keeps only handles and asks for each operation over a
 * socketpair (protocol: keyproto.h; request set: docs/architecture.md).
 *
 * The child confines itself once it has read its keys, before it answers
 * (keyproc_serve's confine: core/sandbox.h sandbox_keys).
 *
 * Once keyproc_start returned in the parent, vault_open there returns a
 * vault that forwards sealing, unsealing, payload key wrapping, audit
 * signing and private key operations to the key process. Its death stops
 * serve (SIGTERM to itself; keyproc_lost() then says so).
 */
#ifndef WHARF_KEYPROC_H
#define WHARF_KEYPROC_H

#include <sys/types.h>

#include "util/error.h"

/* What the child runs: given the socketpair end, answer requests (with
 * keyproc_serve) and return the exit status. */
typedef int (*keyproc_main)(void *arg, int fd);

/* Fork the key process. The child (named "wharf-keys", killed when the
 * parent dies, signals left blocked as the parent had them so that only
 * its parent's exit or SIGKILL end it) runs child(arg, fd) and exits with
 * its result. Call before any other thread exists and before anything
 * secret is read. 0 in the parent, or -1 with err. */
int keyproc_start(keyproc_main child, void *arg, struct error *err);

struct vault;

/* In the child, before answering anything: the key process cannot start
 * (why: msg). The reason reaches the parent, whose first request
 * (vault_open's hello) fails with it; the child prints nothing, so serve
 * reports it once. */
void keyproc_child_fail(const char *msg);

/* What the child does once its keys are read, before it answers: confine
 * itself (core/sandbox.h: sandbox_keys). 0, or -1 with err. */
struct keyproc_confine {
    int (*fn)(void *arg, struct error *err);
    void *arg;
};

/* In the child: with v (a vault opened in the child, holding the keys),
 * load the TLS keys tls_paths[0..n), run confine (NULL: none), then
 * answer requests on fd until the parent closes it. 0 on a clean end, 1
 * otherwise: the reason is logged, or, when confine failed, given to the
 * parent (keyproc_child_fail), which reports it. */
int keyproc_serve(struct vault *v, const char *const *tls_paths, size_t n,
                  const struct keyproc_confine *confine, int fd);

/* Start the thread that notices the key process's death (see above).
 * Separate from keyproc_start so that serve starts it, like every thread,
 * after entering its sandbox (core/sandbox.h: Landlock holds only for
 * threads started after it). Does nothing when no key process runs or the
 * watcher runs already. 0, or -1 with err. */
int keyproc_watch(struct error *err);

/* 1 when the key process ended while serve was running. */
int keyproc_lost(void);

/* The key process's pid, 0 when none runs (tests, the log line). */
pid_t keyproc_pid(void);

/* The key process's /proc/PID/status as it is now, NUL-terminated in
 * buf[0..n): read through a descriptor opened when it was forked, so that
 * serve's sandbox, whose view holds only its own /proc, need not see it
 * (the posture report: security/doctor.h). 0, or -1 when none runs. */
int keyproc_status(char *buf, size_t n);

/* Close the connection and wait for the key process to exit. Safe to call
 * when none was started. */
void keyproc_stop(void);

/* keyclient.c: adopt the parent's ends (socket, liveness pipe); the
 * watcher starts with keyproc_watch. 0 or -1. */
int keyclient_attach(int fd, int watch, pid_t pid, struct error *err);

#endif
