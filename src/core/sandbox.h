/*
 * sandbox.h - `wharf serve` drops root and confines itself (R22).
 *
 * serve is the process that parses partners' input, so it runs with as
 * little as the platform allows. Two steps, both in serve's only thread:
 *
 *   sandbox_drop_root()  right after wharf_open (the key process, forked
 *       before, confines itself: sandbox_keys below):
 *       started as root, become wharf.conf's `user` (its group or
 *       `group`, its supplementary groups), keeping only the capability
 *       to bind ports below 1024 until the listeners are bound; without a
 *       `user`, stay root only with `allow_root = yes` (a warning). So the
 *       lock, the log, the database files are created by that user.
 *       Started as another user: nothing changes.
 *   sandbox_enter()      after net_server_bind, before any thread starts:
 *       every capability dropped; then, unless `sandbox = off`:
 *       PR_SET_NO_NEW_PRIVS, Landlock (the file system view: see
 *       sandbox.c; the kernel's ABI is detected, a kernel without it is
 *       logged and the rest still applies) and a seccomp allow-list of
 *       system calls (anything else kills the process). Threads inherit
 *       all of it; sandbox_enter refuses when a second thread exists (the
 *       key process watcher too starts after it: keyproc_watch).
 *
 * What the view holds is fixed at sandbox_enter: wharf.conf is readable
 * only as the file it was then (edited in place, not replaced), and a
 * folder added to allowed_paths by a reload is reachable after a restart.
 */
#ifndef WHARF_SANDBOX_H
#define WHARF_SANDBOX_H

#include <sys/types.h>

#include "util/error.h"

struct wharf;

/* uid and gid of account user, with group's gid instead when group is not
 * "" (wharf.conf's user and group). 0, or -1 with err. */
int sandbox_account(const char *user, const char *group, uid_t *uid,
                    gid_t *gid, struct error *err);

/* Become w->conf.user when running as root (see above). Refuses, with
 * what to change: root without user and without allow_root; allow_root
 * for a data dir root does not own; a data dir the user does not own or
 * cannot reach. 0, or -1 with err. */
int sandbox_drop_root(struct wharf *w, struct error *err);

/* Drop every capability and, with w->conf.sandbox, apply no_new_privs,
 * Landlock and seccomp to this process. Logs one line saying what
 * applies. Keeps one database connection open for the process's life
 * (SQLite must never re-create the -wal and -shm files the view names).
 * Irreversible. 0, or -1 with err (serve must then exit). */
int sandbox_enter(struct wharf *w, struct error *err);

/* In the key process (vault/keyproc.h), once it read the keystore and the
 * TLS key and before it answers a request: the same account change as
 * sandbox_drop_root (and the same refusals), every capability dropped,
 * not dumpable (no core; the network process, the same user, cannot
 * ptrace it or read its memory); then, unless `sandbox = off`,
 * no_new_privs, a Landlock view with nothing of the data dir (read-only:
 * OpenSSL's configuration and modules, /dev/urandom, /proc/self; no TCP)
 * and a seccomp allow-list narrower than serve's: no socket, no thread, no
 * process, files opened for reading only. Single-threaded callers only.
 * 0, or -1 with err (the key process must then exit). */
int sandbox_keys(struct wharf *w, struct error *err);

/* libseccomp's version as it says at run time (R10), into buf[0..n). */
void sandbox_seccomp_version(char *buf, size_t n);

#endif
