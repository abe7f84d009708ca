/*
 * keyproc.h - the key processes of `wharf serve` (R15, R22), after OpenBSD
 * relayd's "ca" processes: children forked before any listener or parser
 * runs, each holding the keystore (master keys, audit signing keys) and
 * every private key (AS2 profile keys, the TLS listener key, http
 * connectors' client certificate keys, SFTP connectors' SSH keys). The
 * network-facing process keeps only handles and asks for each operation
 * over a socketpair (protocol: keyproto.h; request set:
 * docs/architecture.md).
 *
 * There is one per core, at most KEYPROC_MAX, so that two private-key
 * operations can run at once (issue 14): each serves one request at a
 * time, single-threaded, in the same sandbox. The client (keyclient.c)
 * sends each request to an idle one, and the requests that load keys to
 * all of them, so that their key tables stay the same. Their rate limits
 * are shared out: each allows its share of KEYSRV_KEY_OPS_PER_S and
 * KEYSRV_OPS_PER_S (keyhost.h).
 *
 * Each child confines itself once it has read its keys, before it answers
 * (keyproc_serve's confine: core/sandbox.h sandbox_keys).
 *
 * Once keyproc_start returned in the parent, vault_open there returns a
 * vault that forwards sealing, unsealing, payload key wrapping, audit
 * signing and private key operations to the key processes. The death of
 * any of them stops serve (SIGTERM to itself; keyproc_lost() then says
 * so).
 */
#ifndef WHARF_KEYPROC_H
#define WHARF_KEYPROC_H

#include <sys/types.h>

#include "util/error.h"

#define KEYPROC_MAX 4                   /* key processes at most */

/* What the child runs: given the socketpair end, answer requests (with
 * keyproc_serve) and return the exit status. */
typedef int (*keyproc_main)(void *arg, int fd);

/* Fork n key processes (1..KEYPROC_MAX). Each child (named "wharf-keys",
 * killed when the parent dies, signals left blocked as the parent had them
 * so that only its parent's exit or SIGKILL end it) runs child(arg, fd)
 * and exits with its result. Call before any other thread exists and
 * before anything secret is read. 0 in the parent, or -1 with err (none
 * runs then). */
int keyproc_start(keyproc_main child, void *arg, size_t n,
                  struct error *err);

/* How many key processes serve should start: one per CPU it may run on
 * (cpus_usable: its affinity mask), at most KEYPROC_MAX. */
size_t keyproc_default_count(void);

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

/* Start the thread that notices a key process's death (see above).
 * Separate from keyproc_start so that serve starts it, like every thread,
 * after entering its sandbox (core/sandbox.h: Landlock holds only for
 * threads started after it). Does nothing when no key process runs or the
 * watcher runs already. 0, or -1 with err. */
int keyproc_watch(struct error *err);

/* 1 when a key process ended while serve was running. */
int keyproc_lost(void);

/* How many key processes run (0: none). */
size_t keyproc_count(void);

/* Key process i's pid, 0 when it does not run (tests, the posture
 * report). */
pid_t keyproc_pid(size_t i);

/* Key process i's /proc/PID/status as it is now, NUL-terminated in
 * buf[0..n): read through a descriptor opened when it was forked, so that
 * serve's sandbox, whose view holds only its own /proc, need not see it
 * (the posture report: security/doctor.h). 0, or -1 when it does not
 * run. */
int keyproc_status(size_t i, char *buf, size_t n);

/* Close the connections and wait for the key processes to exit. Safe to
 * call when none was started. */
void keyproc_stop(void);

/* keyclient.c: adopt the parent's ends (socket, liveness pipe) of one
 * more key process; the watcher starts with keyproc_watch. 0 or -1. */
int keyclient_attach(int fd, int watch, pid_t pid, struct error *err);

/* keyclient.c, in a key process just forked: forget the key processes
 * forked before it (their descriptors are closed there), so that its own
 * vault is local. */
void keyclient_forget(void);

#endif
