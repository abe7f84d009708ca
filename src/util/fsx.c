/*
 * fsx.c - owns the durable file-system primitives every other module uses:
 * atomic replace (temp file, fsync, rename, fsync the directory), batched
 * syncs, directory syncs shared by concurrent callers (syncgroup.h), mkdir -p, bounded whole-file reads, dirname.
 *
 * It must never report success for data that is not on stable storage,
 * never skip a sync to go faster (batching is how it goes faster), never
 * leave a temp file behind on failure, and never read more than the
 * caller's bound into memory.
 */
#include "util/fsx.h"
#include "util/fault.h"
#include "util/syncgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* From this many fds on, one syncfs(2) per file system beats one fdatasync
 * per file: on Linux syncfs runs one journal commit and one device flush
 * for the whole batch. */
#define FSX_SYNCFS_MIN 8
/* More distinct file systems than this in one batch: fdatasync the rest. */
#define FSX_SYNCFS_DEVS 8

/* Best effort: the path behind an fd, for error messages only. */
static const char *fsx_fd_name(int fd, char *buf, size_t bufsz)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, bufsz - 1);
    if (n <= 0) {
        snprintf(buf, bufsz, "file descriptor %d", fd);
        return buf;
    }
    buf[n] = '\0';
    return buf;
}

static int fsx_fd_error(struct error *err, int errnum, const char *what, int fd)
{
    char name[PATH_MAX];
    return error_errno(err, errnum, "cannot %s %s", what,
                       fsx_fd_name(fd, name, sizeof(name)));
}

static int fsx_fsync_fd(void *arg)
{
    return fsync(*(int *)arg) == 0 ? 0 : errno;
}

/* Threads syncing the same directory at once share its fsyncs
 * (syncgroup.h): each returns after one that began after its call. */
int fsx_fsync_dir(const char *path, struct error *err)
{
    int injected = fault_fail("fsx.sync_dir");      /* test hook: fault.h */
    if (injected)
        return error_errno(err, injected, "cannot sync folder %s", path);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot open directory %s", path);
    struct stat st;
    struct sync_group *g = fstat(fd, &st) == 0
                               ? sync_group_of(st.st_dev, st.st_ino) : NULL;
    int rc = 0;
    if (g != NULL) {
        rc = sync_group_wait(g, fsx_fsync_fd, &fd, path, err);
    } else if (fsync(fd) != 0) {
        rc = error_errno(err, errno, "cannot sync directory %s", path);
    }
    close(fd);
    return rc;
}

static int fsx_fdatasync_each(const int *fds, size_t n, struct error *err)
{
    for (size_t i = 0; i < n; i++)
        if (fdatasync(fds[i]) != 0)
            return fsx_fd_error(err, errno, "sync", fds[i]);
    return 0;
}

/* syncfs once per distinct file system among fds. */
static int fsx_syncfs_batch(const int *fds, size_t n, struct error *err)
{
    dev_t devs[FSX_SYNCFS_DEVS];
    int reps[FSX_SYNCFS_DEVS];
    size_t ndev = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (fstat(fds[i], &st) != 0)
            return fsx_fd_error(err, errno, "stat", fds[i]);
        size_t k = 0;
        while (k < ndev && devs[k] != st.st_dev)
            k++;
        if (k < ndev)
            continue;
        if (ndev == FSX_SYNCFS_DEVS) {
            if (fdatasync(fds[i]) != 0)
                return fsx_fd_error(err, errno, "sync", fds[i]);
            continue;
        }
        devs[ndev] = st.st_dev;
        reps[ndev++] = fds[i];
    }
    for (size_t k = 0; k < ndev; k++)
        if (syncfs(reps[k]) != 0)
            return fsx_fd_error(err, errno, "sync the file system of", reps[k]);
    return 0;
}

int fsx_sync_fds(const int *fds, size_t n, struct error *err)
{
    if (n == 0)
        return 0;
    if (fds == NULL)
        return error_set(err, "no file descriptors given to sync");
    int injected = fault_fail("fsx.sync");          /* test hook: fault.h */
    if (injected)
        return error_errno(err, injected, "cannot sync %zu file(s)", n);
    if (n < FSX_SYNCFS_MIN)
        return fsx_fdatasync_each(fds, n, err);
    return fsx_syncfs_batch(fds, n, err);
}

static int fsx_write_full(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Fill, chmod, fsync and close the temp file; the fd is closed either way. */
static int fsx_fill_temp(int fd, const char *tmp, const void *data, size_t len,
                         mode_t mode, struct error *err)
{
    int rc = -1;
    if (fsx_write_full(fd, data, len) != 0)
        error_errno(err, errno, "cannot write %s", tmp);
    else if (fchmod(fd, mode) != 0)
        error_errno(err, errno, "cannot set the mode of %s", tmp);
    else if (fsync(fd) != 0)
        error_errno(err, errno, "cannot sync %s", tmp);
    else
        rc = 0;
    if (close(fd) != 0 && rc == 0)
        rc = error_errno(err, errno, "cannot close %s", tmp);
    return rc;
}

int fsx_write_atomic(const char *path, const void *data, size_t len,
                     mode_t mode, struct error *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp) ||
        fsx_dirname(path, dir, sizeof(dir)) != 0)
        return error_set(err, "path %s is too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot create a temporary file for %s",
                           path);
    if (fsx_fill_temp(fd, tmp, data, len, mode, err) != 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return error_errno(err, e, "cannot rename %s to %s", tmp, path);
    }
    return fsx_fsync_dir(dir, err);
}

static int fsx_remove_cb(const char *path, const struct stat *sb, int flag,
                         struct FTW *ftw)
{
    (void)sb, (void)flag;
    if (ftw->level > 0)
        remove(path);
    return 0;
}

void fsx_remove_tree(const char *dir, bool self)
{
    nftw(dir, fsx_remove_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (self)
        rmdir(dir);
}

/* Create one directory; an existing directory is fine. *made says whether
 * this call created it. */
static int fsx_mkdir_one(const char *path, mode_t mode, bool *made,
                         struct error *err)
{
    *made = false;
    if (mkdir(path, mode) == 0) {
        *made = true;
        return 0;
    }
    int e = errno;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;   /* already there (whatever mkdir said, e.g. EROFS) */
    if (e == EEXIST)
        return error_set(err, "cannot create directory %s: it exists and is "
                         "not a directory", path);
    return error_errno(err, e, "cannot create directory %s", path);
}

/* After creating path, make its entry durable by syncing the parent. */
static int fsx_sync_parent(const char *path, struct error *err)
{
    char parent[PATH_MAX];
    if (fsx_dirname(path, parent, sizeof(parent)) != 0)
        return error_set(err, "path %s is too long", path);
    return fsx_fsync_dir(parent, err);
}

int fsx_mkdir_p(const char *path, mode_t mode, struct error *err)
{
    char buf[PATH_MAX];
    size_t len = path != NULL ? strlen(path) : 0;
    if (len == 0)
        return error_set(err, "cannot create a directory with an empty path");
    if (len >= sizeof(buf))
        return error_set(err, "path %s is too long", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue;   /* "//" or a trailing slash */
        char saved = buf[i];
        buf[i] = '\0';
        bool made;
        int rc = fsx_mkdir_one(buf, mode, &made, err);
        if (rc == 0 && made)
            rc = fsx_sync_parent(buf, err);
        buf[i] = saved;
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Read until EOF into a growing buffer, failing once more than max bytes. */
static int fsx_read_fd(int fd, const char *path, size_t max, size_t hint,
                       char **out, size_t *outlen, struct error *err)
{
    size_t cap = (hint < max ? hint : max) + 1, got = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        return error_set(err, "out of memory reading %s", path);
    for (;;) {
        if (got == cap) {
            size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                free(buf);
                return error_set(err, "out of memory reading %s", path);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            return error_errno(err, e, "cannot read %s", path);
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > max) {
            free(buf);
            return error_set(err, "file %s is larger than %zu bytes", path,
                             max);
        }
    }
    buf[got] = '\0';
    *out = buf;
    *outlen = got;
    return 0;
}

int fsx_read_all(const char *path, size_t max, char **out, size_t *len,
                 struct error *err)
{
    *out = NULL;
    *len = 0;
    if (max >= SIZE_MAX / 2)
        return error_set(err, "read limit for %s is too large", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return error_errno(err, errno, "cannot open %s", path);
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0)
        rc = error_errno(err, errno, "cannot stat %s", path);
    else if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max)
        rc = error_set(err, "file %s is larger than %zu bytes", path, max);
    else
        rc = fsx_read_fd(fd, path, max,
                         S_ISREG(st.st_mode) ? (size_t)st.st_size : 4096,
                         out, len, err);
    close(fd);
    return rc;
}

int fsx_dirname(const char *path, char *out, size_t outsz)
{
    if (path == NULL || out == NULL || outsz == 0)
        return -1;
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/')
        end--;                          /* trailing slashes */
    while (end > 0 && path[end - 1] != '/')
        end--;                          /* the last component */
    while (end > 1 && path[end - 1] == '/')
        end--;                          /* the slashes before it */
    const char *src = path;
    if (end == 0) {
        src = path[0] == '/' ? "/" : ".";
        end = 1;
    }
    if (end >= outsz)
        return -1;
    memcpy(out, src, end);
    out[end] = '\0';
    return 0;
}
