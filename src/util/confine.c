/*
 * confine.c - the roots a flow's paths must lie under (see confine.h).
 *
 * Owns the process's path policy: the allowed roots (as written in
 * wharf.conf and as resolved by realpath at configure time) and the data
 * directory's resolved path. A path is accepted in two steps:
 *
 *   1. lexically: absolute, made of plain segments (no "." or ".."), the
 *      segments of a root as its prefix; and the same path with the root's
 *      resolved spelling in front must not lie inside the data directory;
 *   2. when opened: from an fd of the root, with openat2(RESOLVE_BENEATH |
 *      RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), so no symlink beneath
 *      the root is followed (a kernel without openat2 gets the same from an
 *      O_NOFOLLOW walk, one segment at a time).
 *
 * Must never: accept a path with a ".." segment; follow a symlink beneath
 * a root; let a flow name anything inside the data directory.
 */
#include "util/confine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct root {
    char given[PATH_MAX];       /* as written in wharf.conf, normalized */
    char real[PATH_MAX];        /* realpath of it */
};

static pthread_rwlock_t policy_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct root roots[CONFINE_ROOTS_MAX];
static size_t nroots;
static char data_real[PATH_MAX];        /* "" = no policy: nothing allowed */

/* Normalize an absolute path: collapse "//", drop a trailing "/"; refuse
 * "." and ".." segments. 0 or -1. */
static int normalize(const char *path, char *out, size_t n)
{
    if (path == NULL || path[0] != '/' || strlen(path) >= n)
        return -1;
    size_t o = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        size_t len = strcspn(p, "/");
        if ((len == 1 && p[0] == '.') || (len == 2 && !strncmp(p, "..", 2)))
            return -1;
        out[o++] = '/';
        memcpy(out + o, p, len);
        o += len;
        p += len;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

/* The rest of path after prefix dir ("" when equal), or NULL when path
 * is not dir or below it. Both normalized. */
static const char *below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return path + 1;
    if (strncmp(path, dir, n) != 0)
        return NULL;
    if (path[n] == '\0')
        return path + n;
    return path[n] == '/' ? path + n + 1 : NULL;
}

static int inside_data(const char *real_path)
{
    return data_real[0] && below(real_path, data_real) != NULL;
}

static int root_add(const char *spec, struct root *r, struct error *err)
{
    struct stat sb;
    if (normalize(spec, r->given, sizeof(r->given)) < 0)
        return error_set(err, "allowed_paths: '%s' must be an absolute path "
                         "without . or .. segments", spec);
    if (realpath(r->given, r->real) == NULL) {
        if (errno != ENOENT)
            return error_errno(err, errno, "allowed_paths: %s", r->given);
        r->real[0] = '\0';     /* missing now: paths below it fail to open */
        return 0;
    }
    if (stat(r->real, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return error_set(err, "allowed_paths: %s is not a folder", r->given);
    return 0;
}

int confine_configure(const char *data_dir, const char *allowed,
                      struct error *err)
{
    struct root next[CONFINE_ROOTS_MAX];
    size_t n = 0;
    char dreal[PATH_MAX], spec[PATH_MAX];
    if (realpath(data_dir, dreal) == NULL)
        return error_errno(err, errno, "data directory %s", data_dir);
    for (const char *p = allowed ? allowed : ""; *p;) {
        size_t len = strcspn(p, ",");
        while (len > 0 && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len >= sizeof(spec))
            return error_set(err, "allowed_paths: a path is too long");
        if (len > 0) {
            if (n == CONFINE_ROOTS_MAX)
                return error_set(err, "allowed_paths: at most %d folders",
                                 CONFINE_ROOTS_MAX);
            memcpy(spec, p, len);
            spec[len] = '\0';
            if (root_add(spec, &next[n], err) < 0)
                return -1;
            if (next[n].real[0] && below(next[n].real, dreal))
                return error_set(err, "allowed_paths: %s lies inside the "
                                 "data directory", next[n].given);
            n++;
        }
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    pthread_rwlock_wrlock(&policy_lock);
    memcpy(roots, next, n * sizeof(*next));
    nroots = n;
    snprintf(data_real, sizeof(data_real), "%s", dreal);
    pthread_rwlock_unlock(&policy_lock);
    return 0;
}

void confine_reset(void)
{
    pthread_rwlock_wrlock(&policy_lock);
    nroots = 0;
    data_real[0] = '\0';
    pthread_rwlock_unlock(&policy_lock);
}

/* Under the read lock: the root of path and the rest below it. */
static int resolve_locked(const char *what, const char *path, char *norm,
                          size_t nsz, const struct root **root,
                          const char **rest, struct error *err)
{
    if (data_real[0] == '\0' || nroots == 0)
        return error_set(err, "%s %s: no folder may be used: an "
                         "administrator lists the allowed folders in "
                         "wharf.conf (allowed_paths)", what, path ? path : "");
    if (path == NULL || path[0] != '/')
        return error_set(err, "%s must be an absolute path, not '%s'", what,
                         path ? path : "");
    if (normalize(path, norm, nsz) < 0)
        return error_set(err, "%s %s must be an absolute path without . or "
                         ".. segments", what, path);
    for (size_t i = 0; i < nroots; i++) {
        const char *r = below(norm, roots[i].given);
        if (r == NULL && roots[i].real[0])
            r = below(norm, roots[i].real);
        if (r == NULL)
            continue;
        if (roots[i].real[0] == '\0')
            return error_set(err, "%s %s: the allowed folder %s does not "
                             "exist", what, norm, roots[i].given);
        char canon[PATH_MAX * 2];
        snprintf(canon, sizeof(canon), "%s%s%s", roots[i].real,
                 *r && strcmp(roots[i].real, "/") ? "/" : "", r);
        if (inside_data(canon) || inside_data(norm))
            return error_set(err, "%s %s lies inside the data directory, "
                             "which no flow may use", what, norm);
        *root = &roots[i];
        *rest = r;
        return 0;
    }
    char list[1024] = "";
    for (size_t i = 0; i < nroots; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                 i ? ", " : "", roots[i].given);
    return error_set(err, "%s %s is outside the folders an administrator "
                     "allowed in wharf.conf (allowed_paths: %s)", what, norm,
                     list);
}

int confine_check(const char *what, const char *path, struct error *err)
{
    char norm[PATH_MAX];
    const struct root *root;
    const char *rest;
    pthread_rwlock_rdlock(&policy_lock);
    int rc = resolve_locked(what, path, norm, sizeof(norm), &root, &rest, err);
    pthread_rwlock_unlock(&policy_lock);
    return rc;
}

/* openat2 beneath dirfd; -1 with errno (ENOSYS where the kernel lacks it). */
static int open_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
#ifdef SYS_openat2
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)flags;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
#else
    (void)dirfd; (void)rel; (void)flags; (void)mode;
    errno = ENOSYS;
    return -1;
#endif
}

/* The same without openat2: one segment at a time, none a symlink. */
static int open_walk(int dirfd, const char *rel, int flags, mode_t mode)
{
    int fd = dup(dirfd);
    const char *p = rel;
    while (fd >= 0 && *p) {
        size_t len = strcspn(p, "/");
        char seg[NAME_MAX + 1];
        if (len > NAME_MAX) {
            close(fd);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(seg, p, len);
        seg[len] = '\0';
        p += len;
        while (*p == '/')
            p++;
        int last = *p == '\0';
        int next = last ? openat(fd, seg, flags | O_NOFOLLOW, mode)
                        : openat(fd, seg, O_PATH | O_DIRECTORY | O_NOFOLLOW |
                                 O_CLOEXEC);
        int saved = errno;
        close(fd);
        errno = saved;
        fd = next;
    }
    return fd;
}

int confine_open(const char *what, const char *path, int flags, mode_t mode,
                 struct error *err)
{
    char norm[PATH_MAX], rpath[PATH_MAX], rest[PATH_MAX];
    const struct root *root;
    const char *r;
    pthread_rwlock_rdlock(&policy_lock);
    int rc = resolve_locked(what, path, norm, sizeof(norm), &root, &r, err);
    if (rc == 0) {
        snprintf(rpath, sizeof(rpath), "%s", root->real);
        snprintf(rest, sizeof(rest), "%s", *r ? r : ".");
    }
    pthread_rwlock_unlock(&policy_lock);
    if (rc < 0)
        return -1;
    int rootfd = open(rpath, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return error_errno(err, errno, "%s %s", what, norm);
    flags |= O_CLOEXEC | O_NOFOLLOW;
    int fd = open_beneath(rootfd, rest, flags, mode);
    if (fd < 0 && errno == ENOSYS)
        fd = strcmp(rest, ".") ? open_walk(rootfd, rest, flags, mode)
                               : openat(rootfd, ".", flags & ~O_NOFOLLOW, mode);
    int saved = errno;
    struct stat sb;
    if (fd < 0 && saved == ENOTDIR &&
        fstatat(rootfd, rest, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(sb.st_mode))
        saved = ELOOP;          /* O_NOFOLLOW | O_DIRECTORY on a symlink */
    close(rootfd);
    if (fd >= 0)
        return fd;
    if (saved == ELOOP || saved == EXDEV)
        return error_set(err, "%s %s: a symbolic link on the way is not "
                         "followed", what, norm);
    if (saved == ENOTDIR && (flags & O_DIRECTORY))
        return error_set(err, "%s %s is not a directory", what, norm);
    return error_errno(err, saved, "%s %s", what, norm);
}

int confine_open_dir(const char *what, const char *path, struct error *err)
{
    return confine_open(what, path, O_RDONLY | O_DIRECTORY, 0, err);
}

int confine_in_data_dir(const char *path)
{
    char norm[PATH_MAX], real[PATH_MAX];
    int in = 0;
    pthread_rwlock_rdlock(&policy_lock);
    if (path && realpath(path, real) != NULL)
        in = inside_data(real);
    if (!in && normalize(path, norm, sizeof(norm)) == 0)
        in = inside_data(norm);
    pthread_rwlock_unlock(&policy_lock);
    return in;
}
