/*
 * sandbox.c - serve's privilege drop and sandbox, and the key process's
 * (see sandbox.h).
 *
 * Owns: the account serve runs as, the one capability it keeps until its
 * listeners are bound (CAP_NET_BIND_SERVICE), and the confinement of the
 * process: no_new_privs, the Landlock ruleset and the seccomp filter; and
 * the database connection it keeps open so SQLite's -wal and -shm files
 * stay the files the ruleset names. The key process's confinement (the
 * last section) is the same account and a narrower view and list: it
 * reads nothing of the data dir once it holds the keys, has no socket but
 * the ones it was born with, starts no thread or program, and opens files
 * only to read (OpenSSL may load a provider late).
 *
 * Landlock view (rights are the kernel's; what the ABI lacks is dropped):
 *   read, write, create, delete, rename beneath DIR/payloads, DIR/logs,
 *   DIR/state (health.json, the audit head anchor) and every allowed_paths
 *   root (file connectors' folders);
 *   read and write: the files DIR/wharf.db, wharf.db-wal, wharf.db-shm;
 *   read: the file DIR/wharf.conf (SIGHUP), proxy_credentials_file, the
 *   OIDC CA file and notify_ca_file configured at start; the listeners' public certificate
 *   files (tls_cert, admin_client_ca, partner_client_ca; not tls_key) for
 *   the health checks, /metrics, the posture report and the inventory;
 *   list (not read) DIR itself (SQLite fsyncs it);
 *   read: the CA store (/etc/ssl, /usr/share/ca-certificates, ...), the
 *   resolver's files (/etc/hosts, resolv.conf, nsswitch.conf, gai.conf,
 *   host.conf, services), /etc/localtime and zoneinfo, /usr/lib (NSS and
 *   OpenSSL modules loaded late), /proc/self, the CPU list in /sys,
 *   /dev/urandom; read and write /dev/null.
 *   Nothing else: not the keystore, not tls/, nothing executable; no new
 *   TCP listening socket (ABI 4); no signal to, or abstract socket of, a
 *   process outside the sandbox (ABI 6).
 * A rule granting reads over a folder that holds DIR (an allowed_paths
 * root above the data dir) would hand the keystore back: serve says so in
 * a warning.
 *
 * Seccomp: an allow-list of what serve's threads, glibc, OpenSSL, SQLite,
 * libcurl, libssh2, Jansson and zlib call (found by running the e2e suite
 * with a trapping filter), with arguments checked where a call has a
 * dangerous use: clone only for threads (clone3 answers ENOSYS so glibc
 * falls back to clone), socket only for IPv4/IPv6/unix/route netlink,
 * ioctl and prctl only for the requests used, kill and tgkill only to
 * this process, sched_setscheduler only to put the calling thread under
 * SCHED_IDLE (the engine's large lane), wait4 for the key process. The default action kills
 * the process, not EPERM: a call outside the list is an exploit or a gap
 * in the list; EPERM would let an exploit probe on and would hide a gap
 * behind a library's silent fallback, while SIGSYS is loud and leaves a
 * kernel audit record, and the supervisor restarts serve (no state is lost:
 * every step is a transaction). `sandbox = off` is the way to diagnose.
 * ASan+UBSan builds (the e2e tests run them) also allow what the sanitizer
 * runtime needs: LeakSanitizer's exit check clones a tracer (clone with
 * CLONE_VM), ptrace()s the threads and sets dumpable; a symbolizer process
 * fails with EPERM, so reports print unsymbolized instead of killing.
 *
 * Must never: leave serve running as root without allow_root, or the key
 * process as root when serve is not; change the
 * ownership of anything (only `wharf init --user` does); apply Landlock
 * with a second thread running (the rest would escape); grant the
 * keystore, or rights over DIR's own files beyond those named above.
 */
#include "core/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <linux/netlink.h>

#include "core/wharf.h"
#include "store/store.h"
#include "util/log.h"

#if defined(__SANITIZE_ADDRESS__)
#define SB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_ASAN 1
#endif
#endif
#ifndef SB_ASAN
#define SB_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define SB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SB_TSAN 1
#endif
#endif
#ifndef SB_TSAN
#define SB_TSAN 0
#endif

/* Landlock rights newer than Debian 12's <linux/landlock.h> (ABI 1-2). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)       /* ABI 3 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)      /* ABI 5 */
#endif
#define SB_NET_BIND_TCP (1ULL << 0)                     /* ABI 4 */
#define SB_NET_CONNECT_TCP (1ULL << 1)                  /* ABI 4 */
#define SB_SCOPE_ABSTRACT_UNIX (1ULL << 0)              /* ABI 6 */
#define SB_SCOPE_SIGNAL (1ULL << 1)                     /* ABI 6 */

/* struct landlock_ruleset_attr as of ABI 6 (the kernel takes a prefix). */
struct sb_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

#define SB_FILE_RIGHTS (LANDLOCK_ACCESS_FS_EXECUTE | \
    LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | \
    LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
#define SB_RO_FILE LANDLOCK_ACCESS_FS_READ_FILE
#define SB_RW_FILE (LANDLOCK_ACCESS_FS_READ_FILE | \
    LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)
#define SB_RO_TREE (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define SB_RW_TREE (SB_RW_FILE | LANDLOCK_ACCESS_FS_READ_DIR | \
    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE | \
    LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG | \
    LANDLOCK_ACCESS_FS_REFER)

/* What sandbox_drop_root decided, for sandbox_enter's log line (the log
 * is not open yet when the drop happens). */
static struct {
    bool stayed_root;           /* allow_root */
    bool unprivileged;          /* started as a user other than root */
    bool user_ignored;          /* ... and wharf.conf names another */
    char account[64];
    struct store *keeper;       /* never closed: see sandbox_enter */
} sb;

/* ---- the account ------------------------------------------------------------ */

int sandbox_account(const char *user, const char *group, uid_t *uid,
                    gid_t *gid, struct error *err)
{
    char buf[16384];
    struct passwd pw, *pwp = NULL;
    int e = getpwnam_r(user, &pw, buf, sizeof(buf), &pwp);
    if (pwp == NULL)
        return e ? error_errno(err, e, "cannot look up user %s", user)
                 : error_set(err, "no user %s on this system (create it, "
                             "e.g. useradd --system %s)", user, user);
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    if (group == NULL || group[0] == '\0')
        return 0;
    struct group gr, *grp = NULL;
    e = getgrnam_r(group, &gr, buf, sizeof(buf), &grp);
    if (grp == NULL)
        return e ? error_errno(err, e, "cannot look up group %s", group)
                 : error_set(err, "no group %s on this system", group);
    *gid = gr.gr_gid;
    return 0;
}

/* Keep exactly the capabilities in mask (permitted and effective; none
 * inheritable or ambient). */
static int sandbox_caps(uint64_t mask, struct error *err)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    d[0].permitted = d[0].effective = (uint32_t)mask;
    d[1].permitted = d[1].effective = (uint32_t)(mask >> 32);
    if (syscall(SYS_capset, &h, d) != 0)
        return error_errno(err, errno, "cannot drop capabilities");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
        errno != EINVAL)
        return error_errno(err, errno, "cannot clear ambient capabilities");
    return 0;
}

/* Started as root with no user: allowed only when said, and only for a
 * data dir root owns (a data dir its user may edit must not keep root). */
static int sandbox_stay_root(const struct wharf *w, const struct stat *dir,
                             struct error *err)
{
    if (!w->conf.allow_root)
        return error_set(err, "serve was started as root and %s names no "
                         "user other than root to run as: set user = NAME "
                         "(an account that "
                         "owns %s: chown -R NAME: %s), or allow_root = yes "
                         "to keep running as root (not recommended)",
                         w->conf_path, w->dir, w->dir);
    if (dir->st_uid != 0)
        return error_set(err, "allow_root = yes, but %s belongs to uid %u, "
                         "not root: set user = that account in %s instead",
                         w->dir, (unsigned)dir->st_uid, w->conf_path);
    sb.stayed_root = true;
    snprintf(sb.account, sizeof(sb.account), "root");
    return 0;
}

/* setgroups, setgid, setuid to the account, keeping CAP_NET_BIND_SERVICE
 * (the listeners bind later; sandbox_enter drops it). */
static int sandbox_become(const char *user, uid_t uid, gid_t gid,
                          struct error *err)
{
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        return error_errno(err, errno, "cannot keep capabilities");
    if (initgroups(user, gid) != 0)
        return error_errno(err, errno, "cannot set the groups of %s", user);
    if (setresgid(gid, gid, gid) != 0)
        return error_errno(err, errno, "cannot change group to %u",
                           (unsigned)gid);
    if (setresuid(uid, uid, uid) != 0)
        return error_errno(err, errno, "cannot change user to %s", user);
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 ||
        sandbox_caps(1ULL << CAP_NET_BIND_SERVICE, err) < 0)
        return error_set(err, "cannot keep only CAP_NET_BIND_SERVICE as %s",
                         user);
    if (setuid(0) == 0 || geteuid() == 0)
        return error_set(err, "still able to become root after changing "
                         "to %s: refusing to serve", user);
    /* a change of user resets it to fs.suid_dumpable: no cores, ever */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return error_errno(err, errno, "cannot turn core dumps off");
    return 0;
}

int sandbox_drop_root(struct wharf *w, struct error *err)
{
    uid_t uid = 0;
    gid_t gid = 0;
    if (geteuid() != 0) {
        sb.unprivileged = true;
        sb.user_ignored = w->conf.user[0] &&
            (sandbox_account(w->conf.user, "", &uid, &gid, NULL) < 0 ||
             uid != geteuid());
        return 0;
    }
    struct stat dir;
    if (stat(w->dir, &dir) != 0)
        return error_errno(err, errno, "data directory %s", w->dir);
    const char *user = w->conf.user;
    if (user[0] && sandbox_account(user, w->conf.group, &uid, &gid,
                                   err) < 0) {
        error_prefix(err, "%s: user", w->conf_path);
        return -1;
    }
    if (user[0] == '\0' || uid == 0)
        return sandbox_stay_root(w, &dir, err);
    if (dir.st_uid != uid)
        return error_set(err, "%s belongs to uid %u, not to %s (uid %u), "
                         "the user of %s: run chown -R %s: %s (serve never "
                         "changes ownership)", w->dir, (unsigned)dir.st_uid,
                         user, (unsigned)uid, w->conf_path, user, w->dir);
    if (sandbox_become(user, uid, gid, err) < 0)
        return -1;
    if (access(w->dir, R_OK | W_OK | X_OK) != 0)
        return error_errno(err, errno, "as %s, serve cannot use %s (every "
                           "folder above it must be searchable by %s)",
                           user, w->dir, user);
    snprintf(sb.account, sizeof(sb.account), "%s", user);
    return 0;
}

/* ---- Landlock ------------------------------------------------------------------ */

static int sb_ll_abi(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
                       LANDLOCK_CREATE_RULESET_VERSION);
    return abi < 0 ? -errno : (int)abi;
}

static uint64_t sb_ll_handled(int abi)
{
    uint64_t fs = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;      /* ABI 1 */
    if (abi >= 2)
        fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return fs;
}

struct sb_ll {
    int fd;                     /* the ruleset */
    uint64_t handled;
    int nrules;
    char dir_real[PATH_MAX];    /* realpath of DIR */
};

/* Whether DIR lies at or beneath folder (both real paths). */
static bool sb_holds_dir(const struct sb_ll *ll, const char *folder)
{
    size_t n = strlen(folder);
    if (strcmp(folder, "/") == 0)
        return true;
    return strncmp(ll->dir_real, folder, n) == 0 &&
           (ll->dir_real[n] == '/' || ll->dir_real[n] == '\0');
}

/* Allow rights on path (a folder: beneath it; a file: it). A path that
 * does not exist is skipped unless required. 0, or -1 with err. */
static int sb_ll_allow(struct sb_ll *ll, const char *path, uint64_t rights,
                       bool required, struct error *err)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (!required && (errno == ENOENT || errno == ENOTDIR))
            return 0;
        return error_errno(err, errno, "sandbox: cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return error_errno(err, errno, "sandbox: cannot stat %s", path);
    }
    if (!S_ISDIR(st.st_mode))
        rights &= SB_FILE_RIGHTS;
    char real[PATH_MAX];
    if (S_ISDIR(st.st_mode) && (rights & LANDLOCK_ACCESS_FS_READ_FILE) &&
        realpath(path, real) != NULL && sb_holds_dir(ll, real))
        log_warn("sandbox: %s holds the data directory %s, so serve may "
                 "read its keystore: keep the data directory out of "
                 "allowed_paths roots", path, ll->dir_real);
    struct landlock_path_beneath_attr pb = {
        .allowed_access = rights & ll->handled, .parent_fd = fd };
    long rc = syscall(SYS_landlock_add_rule, ll->fd,
                      LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    close(fd);
    if (rc != 0)
        return error_errno(err, e, "sandbox: cannot allow %s", path);
    ll->nrules++;
    return 0;
}

struct sb_files {
    struct sb_ll *ll;
    struct error *err;
};

static int sb_allow_ro(const char *path, void *arg)
{
    struct sb_files *f = arg;
    return sb_ll_allow(f->ll, path, SB_RO_FILE, false, f->err) < 0;
}

/* The data directory's part of the view. */
static int sb_ll_data(struct sb_ll *ll, const struct wharf *w,
                      struct error *err)
{
    static const char *const db_files[] = { "wharf.db", "wharf.db-wal",
                                            "wharf.db-shm" };
    char path[4300];
    snprintf(path, sizeof(path), "%s/state", w->dir);
    if (sb_ll_allow(ll, w->payload_dir, SB_RW_TREE, true, err) < 0 ||
        sb_ll_allow(ll, w->log_dir, SB_RW_TREE, true, err) < 0 ||
        sb_ll_allow(ll, path, SB_RW_TREE, false, err) < 0 ||
        sb_ll_allow(ll, w->conf_path, SB_RO_FILE, true, err) < 0 ||
        sb_ll_allow(ll, w->dir, LANDLOCK_ACCESS_FS_READ_DIR, true, err) < 0)
        return -1;
    for (size_t i = 0; !wharf_store_shared(w) &&
                       i < sizeof(db_files) / sizeof(db_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", w->dir, db_files[i]);
        if (sb_ll_allow(ll, path, SB_RW_FILE, true, err) < 0)
            return -1;
    }
    /* PostgreSQL: what libpq reads at each (re)connection */
    struct sb_files f = { ll, err };
    if (store_url_files(w->db_path, sb_allow_ro, &f) != 0)
        return -1;
    if (w->conf.proxy_credentials_file[0] &&
        sb_ll_allow(ll, w->conf.proxy_credentials_file, SB_RO_FILE, false,
                    err) < 0)
        return -1;
    /* notify_ca_file: the mail, webhook and syslog collectors' CA (a live
     * key: a file named later is seen after a restart, as allowed_paths) */
    if (w->conf.security.ca_file[0] &&
        sb_ll_allow(ll, w->conf.security.ca_file, SB_RO_FILE, false, err) < 0)
        return -1;
    /* the OIDC client's CA file (`wharf oidc configure --ca-file`), read
     * by libcurl at every request: the one configured now */
    char *ca = NULL;
    if (store_setting_get(sb.keeper, "oidc_ca_file", &ca, err) < 0)
        return -1;
    int rc = ca && ca[0] ? sb_ll_allow(ll, ca, SB_RO_FILE, false, err) : 0;
    free(ca);
    return rc;
}

/* The listeners' public certificates (tls_cert and the client CA files;
 * never tls_key), read while serving by the health checks, /metrics, the
 * posture report and the inventory (R18, R7, R24, R23): each file alone,
 * read-only. Without these, tls/ being outside the view, those reports
 * would silently leave the listeners' certificate out. */
static int sb_ll_certs(struct sb_ll *ll, const struct wharf *w,
                       struct error *err)
{
    const char *const files[] = { w->conf.tls_cert, w->conf.admin_client_ca,
                                  w->conf.partner_client_ca };
    char path[4300];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (files[i][0] == '\0')
            continue;
        if (files[i][0] == '/')
            snprintf(path, sizeof(path), "%s", files[i]);
        else if (wharf_path(w, files[i], path, sizeof(path)) < 0)
            continue;
        if (sb_ll_allow(ll, path, SB_RO_FILE, false, err) < 0)
            return -1;
    }
    return 0;
}

/* Every allowed_paths root (comma-separated, blanks around). */
static int sb_ll_roots(struct sb_ll *ll, const char *list, struct error *err)
{
    char root[PATH_MAX];
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > s && (size_t)(e - s) < sizeof(root)) {
            memcpy(root, s, (size_t)(e - s));
            root[e - s] = '\0';
            if (sb_ll_allow(ll, root, SB_RW_TREE, false, err) < 0)
                return -1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

/* resolv.conf is often a link into a folder a resolver daemon rewrites
 * (replacing the file): allow that folder, not the file of today. */
static int sb_ll_resolv(struct sb_ll *ll, struct error *err)
{
    char real[PATH_MAX];
    if (realpath("/etc/resolv.conf", real) == NULL)
        return 0;
    char *slash = strrchr(real, '/');
    if (slash != NULL && slash != real && strncmp(real, "/etc/", 5) != 0) {
        *slash = '\0';
        return sb_ll_allow(ll, real, SB_RO_TREE, false, err);
    }
    return sb_ll_allow(ll, "/etc/resolv.conf", SB_RO_FILE, false, err);
}

/* What the libraries read from the system. */
static int sb_ll_system(struct sb_ll *ll, struct error *err)
{
    static const struct { const char *path; uint64_t rights; } sys[] = {
        { "/etc/ssl", SB_RO_TREE },
        { "/usr/lib/ssl", SB_RO_TREE },
        { "/usr/share/ca-certificates", SB_RO_TREE },
        { "/usr/local/share/ca-certificates", SB_RO_TREE },
        { "/etc/pki", SB_RO_TREE },
        { "/etc/hosts", SB_RO_FILE },
        { "/etc/nsswitch.conf", SB_RO_FILE },
        { "/etc/host.conf", SB_RO_FILE },
        { "/etc/gai.conf", SB_RO_FILE },
        { "/etc/services", SB_RO_FILE },
        { "/etc/localtime", SB_RO_FILE },
        { "/usr/share/zoneinfo", SB_RO_TREE },
        { "/usr/lib", SB_RO_TREE },
        { "/lib", SB_RO_TREE },
        { "/lib64", SB_RO_TREE },
        { "/proc/self", SB_RO_TREE },
        { "/sys/devices/system/cpu", SB_RO_TREE },
        { "/dev/urandom", SB_RO_FILE },
        { "/dev/null", SB_RW_FILE },
    };
    for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
        if (sb_ll_allow(ll, sys[i].path, sys[i].rights, false, err) < 0)
            return -1;
    return sb_ll_resolv(ll, err);
}

/* serve's view (arg: the struct wharf). */
static int sb_ll_rules(struct sb_ll *ll, const void *arg, struct error *err)
{
    const struct wharf *w = arg;
    if (realpath(w->dir, ll->dir_real) == NULL)
        return error_errno(err, errno, "sandbox: data directory %s", w->dir);
    if (sb_ll_data(ll, w, err) < 0 || sb_ll_certs(ll, w, err) < 0 ||
        sb_ll_roots(ll, w->conf.allowed_paths, err) < 0 ||
        sb_ll_system(ll, err) < 0)
        return -1;
    return 0;
}

/* The rules of one view: 0, or -1 with err. */
typedef int (*sb_ll_rules_fn)(struct sb_ll *ll, const void *arg,
                              struct error *err);

/* Apply a view: every file system right the ABI knows handled, the TCP
 * rights in net (ABI 4), signals and abstract sockets scoped (ABI 6), and
 * rules(ll, arg) allowed. *abi: the kernel's Landlock ABI, 0 when it has
 * none (not an error: logged or accepted by the caller). */
static int sb_landlock_apply(uint64_t net, sb_ll_rules_fn rules,
                             const void *arg, int *abi, int *nrules,
                             struct error *err)
{
    *abi = sb_ll_abi();
    if (*abi <= 0) {
        *abi = 0;
        return 0;
    }
    struct sb_ruleset_attr attr = { .handled_access_fs = sb_ll_handled(*abi) };
    size_t size = sizeof(attr.handled_access_fs);
    if (*abi >= 4) {
        attr.handled_access_net = net;
        size += sizeof(attr.handled_access_net);
    }
    if (*abi >= 6) {
        attr.scoped = SB_SCOPE_ABSTRACT_UNIX | SB_SCOPE_SIGNAL;
        size += sizeof(attr.scoped);
    }
    struct sb_ll ll = { .handled = attr.handled_access_fs };
    ll.fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ll.fd < 0)
        return error_errno(err, errno, "sandbox: cannot create a Landlock "
                           "ruleset (ABI %d)", *abi);
    int rc = rules(&ll, arg, err);
    if (rc == 0 && syscall(SYS_landlock_restrict_self, ll.fd, 0) != 0)
        rc = error_errno(err, errno, "sandbox: cannot apply Landlock");
    close(ll.fd);
    *nrules = ll.nrules;
    return rc;
}

/* serve's view: no new TCP listener (ABI 4). */
static int sandbox_landlock(const struct wharf *w, int *abi, int *nrules,
                            struct error *err)
{
    return sb_landlock_apply(SB_NET_BIND_TCP, sb_ll_rules, w, abi, nrules,
                             err);
}

/* ---- seccomp ------------------------------------------------------------------- */

/* Calls allowed with any arguments. */
static const char *const sb_calls[] = {
    /* files */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
    "pwritev", "preadv2", "pwritev2", "lseek", "open", "openat", "openat2",
    "close", "close_range", "stat", "fstat", "lstat", "newfstatat", "statx",
    "statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "getdents64", "mkdir", "mkdirat", "rmdir", "unlink",
    "unlinkat", "rename", "renameat", "renameat2", "link", "linkat",
    "fsync", "fdatasync", "syncfs", "ftruncate", "fallocate", "fadvise64",
    "fchmod", "fchown", "dup", "dup2", "dup3", "fcntl", "flock", "pipe",
    "pipe2",
    "eventfd2", "getcwd", "umask", "copy_file_range", "sendfile",
    "fgetxattr", "fsetxattr", "memfd_create",
    /* memory */
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock",
    "munlock",
    /* threads, time, signals */
    "futex", "set_robust_list", "rseq", "set_tid_address", "exit",
    "exit_group", "sched_yield", "sched_getaffinity", "gettid", "getpid",
    "getppid", "nanosleep", "clock_nanosleep", "wait4",
    "clock_gettime", "clock_getres", "gettimeofday", "time",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait",
    "sigaltstack", "restart_syscall",
    /* network (the listeners' sockets exist already; no listen) */
    "connect", "accept", "accept4", "bind", "getsockname", "getpeername",
    "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown", "socketpair", "poll", "ppoll",
    "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait",
    /* the rest */
    "getrandom", "uname", "sysinfo", "getuid", "geteuid", "getgid",
    "getegid", "getresuid", "getresgid", "getgroups", "getrlimit",
    "getrusage", "times", "getpriority",
    "setpriority",          /* the large lane's threads run lower (engine.c) */
};

/* LeakSanitizer's exit check: a tracer task stops every thread (allowed
 * in ASan builds only). */
static const char *const sb_asan_calls[] = {
    "ptrace", "waitid", "getdents", "tkill",
};

static int sb_rule(scmp_filter_ctx ctx, uint32_t action, const char *name,
                   unsigned n, const struct scmp_arg_cmp *args,
                   struct error *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0;                   /* not a call of this architecture */
    int rc = seccomp_rule_add_array(ctx, action, nr, n, args);
    if (rc != 0)
        return error_errno(err, -rc, "sandbox: seccomp rule for %s", name);
    return 0;
}

/* Allow each of names[0..n) with any arguments. */
static int sb_allow_all(scmp_filter_ctx ctx, const char *const *names,
                        size_t n, struct error *err)
{
    for (size_t i = 0; i < n; i++)
        if (sb_rule(ctx, SCMP_ACT_ALLOW, names[i], 0, NULL, err) < 0)
            return -1;
    return 0;
}

#define SB_ALLOW_ALL(ctx, list, err) \
    sb_allow_all(ctx, list, sizeof(list) / sizeof(list[0]), err)

/* clone: threads only; clone3 (flags out of the filter's reach): ENOSYS,
 * so glibc uses clone. */
static int sb_seccomp_clone(scmp_filter_ctx ctx, struct error *err)
{
    struct scmp_arg_cmp thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD,
                                         CLONE_THREAD);
    if (sb_rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &thread, err) < 0 ||
        sb_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err) < 0)
        return -1;
#if SB_ASAN
    struct scmp_arg_cmp vm = SCMP_A0(SCMP_CMP_MASKED_EQ,
                                     CLONE_VM | CLONE_THREAD, CLONE_VM);
    struct scmp_arg_cmp fork = SCMP_A0(SCMP_CMP_MASKED_EQ,
                                       CLONE_VM | CLONE_THREAD, 0);
    if (sb_rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &vm, err) < 0 ||
        sb_rule(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &fork, err) < 0 ||
        sb_rule(ctx, SCMP_ACT_ERRNO(EPERM), "fork", 0, NULL, err) < 0 ||
        sb_rule(ctx, SCMP_ACT_ERRNO(EPERM), "vfork", 0, NULL, err) < 0)
        return -1;
#endif
    return 0;
}

/* Signals only to this process (raise, abort, the key process watcher's
 * SIGTERM); Landlock's scope says the same where the kernel has it. */
static int sb_seccomp_signals(scmp_filter_ctx ctx, struct error *err)
{
    struct scmp_arg_cmp self = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid());
    if (sb_rule(ctx, SCMP_ACT_ALLOW, "kill", 1, &self, err) < 0 ||
        sb_rule(ctx, SCMP_ACT_ALLOW, "tgkill", 1, &self, err) < 0)
        return -1;
    return 0;
}

static int sb_seccomp_socket(scmp_filter_ctx ctx, struct error *err)
{
    static const int families[] = { AF_UNIX, AF_INET, AF_INET6 };
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i]);
        if (sb_rule(ctx, SCMP_ACT_ALLOW, "socket", 1, &a, err) < 0)
            return -1;
    }
    /* glibc's getaddrinfo asks the kernel for local addresses */
    struct scmp_arg_cmp nl[2] = {
        SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
        SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE),
    };
    return sb_rule(ctx, SCMP_ACT_ALLOW, "socket", 2, nl, err);
}

/* ioctl and prctl: only the requests the libraries make; sched_setscheduler
 * only to SCHED_IDLE. */
static int sb_seccomp_requests(scmp_filter_ctx ctx, struct error *err)
{
    static const unsigned long ioctls[] = { TCGETS, TIOCGWINSZ, FIONREAD,
                                            FIONBIO, FIOCLEX, FIONCLEX };
    static const unsigned long prctls[] = {
        PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE,
#if SB_ASAN
        PR_SET_DUMPABLE, PR_SET_PTRACER, PR_SET_PDEATHSIG,
#endif
    };
    /* the large lane's threads (engine.c): SCHED_IDLE, the calling
     * thread's own; no other policy (RT would starve the machine) */
    struct scmp_arg_cmp idle[2] = { SCMP_A0(SCMP_CMP_EQ, 0),
                                    SCMP_A1(SCMP_CMP_EQ, SCHED_IDLE) };
    if (sb_rule(ctx, SCMP_ACT_ALLOW, "sched_setscheduler", 2, idle, err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]); i++) {
        struct scmp_arg_cmp a = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
                                        ioctls[i]);
        if (sb_rule(ctx, SCMP_ACT_ALLOW, "ioctl", 1, &a, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < sizeof(prctls) / sizeof(prctls[0]); i++) {
        struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, prctls[i]);
        if (sb_rule(ctx, SCMP_ACT_ALLOW, "prctl", 1, &a, err) < 0)
            return -1;
    }
    return 0;
}

static int sb_seccomp_rules(scmp_filter_ctx ctx, struct error *err)
{
    if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0)
        return error_set(err, "sandbox: seccomp cannot cover every thread");
    if (SB_ALLOW_ALL(ctx, sb_calls, err) < 0 ||
        (SB_ASAN && SB_ALLOW_ALL(ctx, sb_asan_calls, err) < 0))
        return -1;
    if (sb_seccomp_clone(ctx, err) < 0 || sb_seccomp_socket(ctx, err) < 0 ||
        sb_seccomp_signals(ctx, err) < 0 || sb_seccomp_requests(ctx, err) < 0)
        return -1;
    return 0;
}

/* Load the filter that rules(ctx) allows; anything else kills. */
static int sb_seccomp_apply(int (*rules)(scmp_filter_ctx, struct error *),
                            struct error *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL)
        return error_set(err, "sandbox: cannot set up seccomp (libseccomp)");
    int rc = rules(ctx, err);
    if (rc == 0) {
        int e = seccomp_load(ctx);
        if (e != 0)
            rc = error_errno(err, -e, "sandbox: cannot load the seccomp "
                             "filter");
    }
    seccomp_release(ctx);
    return rc;
}

/* ---- entering ----------------------------------------------------------------- */

/* Threads of this process (entries of /proc/self/task), or -1. */
static int sb_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The database files must exist, and keep existing, before the view names
 * them: one connection held open for good (it also runs SQLite's spill
 * files into payloads/, inside the view). */
static int sb_keep_database(const struct wharf *w, struct error *err)
{
    if (store_temp_dir(w->payload_dir, err) < 0)
        return -1;
    if (sb.keeper == NULL && (sb.keeper = store_open(w->db_path, err)) == NULL)
        return -1;
    if (wharf_store_shared(w))
        return 0;           /* PostgreSQL: no database file here */
    char path[4300];
    struct stat st;
    snprintf(path, sizeof(path), "%s-wal", w->db_path);
    if (stat(path, &st) != 0)
        return error_errno(err, errno, "sandbox: %s", path);
    snprintf(path, sizeof(path), "%s-shm", w->db_path);
    if (stat(path, &st) != 0)
        return error_errno(err, errno, "sandbox: %s", path);
    return 0;
}

static void sb_log(const struct wharf *w, int abi, int nrules)
{
    char who[128];
    if (sb.unprivileged)
        snprintf(who, sizeof(who), "uid %u (started unprivileged)",
                 (unsigned)getuid());
    else
        snprintf(who, sizeof(who), "%s (uid %u)", sb.account,
                 (unsigned)getuid());
    if (sb.stayed_root)
        log_warn("running as root (allow_root = yes in %s): set user = "
                 "NAME to drop root after binding", w->conf_path);
    if (sb.user_ignored)
        log_warn("user = %s in %s is not used: serve was started as uid %u, "
                 "not as root (start it as root to run as %s)",
                 w->conf.user, w->conf_path, (unsigned)getuid(),
                 w->conf.user);
    if (!w->conf.sandbox) {
        log_warn("sandbox = off in %s: serve runs as %s without "
                 "no_new_privs, Landlock or seccomp (for diagnosis only)",
                 w->conf_path, who);
        return;
    }
    if (abi == 0)
        log_warn("sandbox: this kernel has no Landlock: serve's file "
                 "system view is not restricted (seccomp still applies)");
    log_info("sandbox: running as %s, no capabilities, no_new_privs, "
             "Landlock ABI %d (%d rules), seccomp allow-list (others kill "
             "the process)", who, abi, nrules);
}

int sandbox_enter(struct wharf *w, struct error *err)
{
    int n = sb_threads();
    if (n != 1)
        return error_set(err, "sandbox: %d threads are running; it must be "
                         "entered before any starts (a bug in serve)", n);
    if (sandbox_caps(0, err) < 0)
        return -1;
    int abi = 0, nrules = 0;
    if (w->conf.sandbox) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            return error_errno(err, errno, "sandbox: cannot set "
                               "no_new_privs");
        if (sb_keep_database(w, err) < 0 ||
            sandbox_landlock(w, &abi, &nrules, err) < 0 ||
            sb_seccomp_apply(sb_seccomp_rules, err) < 0)
            return -1;
    }
    sb_log(w, abi, nrules);
    return 0;
}

/* ---- the key process ---------------------------------------------------------- */

/* The key process's view: nothing of the data dir (the keystore and the
 * TLS key are read before), only what OpenSSL may load late (providers,
 * its configuration), the random device, and this process's /proc (the
 * sanitizers' exit checks read it). No TCP at all (ABI 4), no signal or
 * abstract socket outside (ABI 6). */
static int sbk_ll_rules(struct sb_ll *ll, const void *arg, struct error *err)
{
    static const char *const ro_trees[] = { "/usr/lib/ssl", "/etc/ssl",
        "/usr/lib", "/lib", "/lib64", "/proc/self", "/dev/urandom" };
    (void)arg;
    for (size_t i = 0; i < sizeof(ro_trees) / sizeof(ro_trees[0]); i++)
        if (sb_ll_allow(ll, ro_trees[i], SB_RO_TREE, false, err) < 0)
            return -1;
    return 0;
}

/* What the key process calls: its socket and liveness pipe, memory,
 * time (the rate limits), randomness, signals to itself, and files opened
 * for reading only (OpenSSL loading a provider late; Landlock decides
 * which). No socket, no thread, no write to any file it did not have. */
static const char *const sbk_calls[] = {
    "read", "write", "readv", "writev", "close", "lseek", "pread64",
    "fstat", "newfstatat", "statx", "stat", "lstat", "access", "faccessat",
    "faccessat2", "readlink", "readlinkat", "getdents64", "fcntl", "flock",
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock",
    "munlock", "futex", "set_robust_list", "rseq", "exit", "exit_group",
    "sched_yield", "sched_getaffinity", "gettid", "getpid", "getppid",
    "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres",
    "gettimeofday", "time", "rt_sigaction", "rt_sigprocmask",
    "rt_sigreturn", "sigaltstack", "restart_syscall", "getrandom", "uname",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
    "getrlimit", "prlimit64", "getrusage",
};

static int sbk_seccomp_rules(scmp_filter_ctx ctx, struct error *err)
{
    if (SB_TSAN && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0)
        return error_set(err, "key process sandbox: seccomp cannot cover "
                         "every thread");
    if (SB_ALLOW_ALL(ctx, sbk_calls, err) < 0)
        return -1;
    /* files for reading only: anything that writes, creates or truncates
     * kills the process */
    const scmp_datum_t wr = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
    struct scmp_arg_cmp at = SCMP_A2(SCMP_CMP_MASKED_EQ, wr, 0);
    struct scmp_arg_cmp op = SCMP_A1(SCMP_CMP_MASKED_EQ, wr, 0);
    if (sb_rule(ctx, SCMP_ACT_ALLOW, "openat", 1, &at, err) < 0 ||
        sb_rule(ctx, SCMP_ACT_ALLOW, "open", 1, &op, err) < 0 ||
        sb_seccomp_signals(ctx, err) < 0)
        return -1;
#if SB_ASAN
    /* LeakSanitizer's exit check: its tracer task, as for serve */
    if (SB_ALLOW_ALL(ctx, sb_asan_calls, err) < 0 ||
        sb_seccomp_clone(ctx, err) < 0 ||
        sb_rule(ctx, SCMP_ACT_ALLOW, "wait4", 0, NULL, err) < 0)
        return -1;
    static const unsigned long prctls[] = { PR_SET_DUMPABLE, PR_GET_DUMPABLE,
                                            PR_SET_PTRACER, PR_SET_PDEATHSIG,
                                            PR_SET_NAME, PR_GET_NAME };
    for (size_t i = 0; i < sizeof(prctls) / sizeof(prctls[0]); i++) {
        struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, prctls[i]);
        if (sb_rule(ctx, SCMP_ACT_ALLOW, "prctl", 1, &a, err) < 0)
            return -1;
    }
#endif
    return 0;
}

/* Threads the key process may have: its own; ThreadSanitizer builds also
 * the runtime's background thread, which it starts again in a forked
 * child (seccomp covers it, TSYNC; Landlock, per thread, does not: in
 * those test builds only). */
#define SBK_THREADS (1 + SB_TSAN)

int sandbox_keys(struct wharf *w, struct error *err)
{
    int n = sb_threads();
    if (n < 1 || n > SBK_THREADS)
        return error_set(err, "key process sandbox: %d threads run (a bug: "
                         "it must be entered before any starts)", n);
    if (sandbox_drop_root(w, err) < 0 || sandbox_caps(0, err) < 0)
        return -1;
    /* a change of user reset it: no core, no ptrace by the same user (the
     * network process runs as it) */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return error_errno(err, errno, "key process: cannot turn core dumps "
                           "off");
    if (!w->conf.sandbox)
        return 0;
    int abi = 0, nrules = 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return error_errno(err, errno, "key process sandbox: cannot set "
                           "no_new_privs");
    if (sb_landlock_apply(SB_NET_BIND_TCP | SB_NET_CONNECT_TCP, sbk_ll_rules,
                          NULL, &abi, &nrules, err) < 0 ||
        sb_seccomp_apply(sbk_seccomp_rules, err) < 0)
        return -1;
    return 0;
}

void sandbox_seccomp_version(char *buf, size_t n)
{
    const struct scmp_version *v = seccomp_version();
    snprintf(buf, n, "%u.%u.%u", v->major, v->minor, v->micro);
}
