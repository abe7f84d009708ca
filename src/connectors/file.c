/*
 * file.c - the file connector (M3): a folder as a source, a folder as a
 * destination, or both.
 *
 * Config: FILE_OPTIONS below (receive_dir, pattern, after, archive_dir,
 * send_dir, on_collision; `wharf connector help file` prints it).
 *
 * Source: a file is taken only when its size, mtime and inode are the same
 * on two polls in a row (the writer is done). Hidden files (".name") and
 * anything that is not a regular file are ignored, symlinks included.
 * Files are taken in batches: all read into one intake, committed, and only
 * then deleted or archived. A crash between commit and delete is harmless:
 * the file is seen again and recognized as a duplicate (same name, size,
 * mtime and content).
 *
 * Destination: each message is decrypted into ".wharf-<id>.tmp" in
 * send_dir, marked with the message id (extended attribute
 * user.wharf.message); the batch's temp files are synced together, renamed
 * into place (never over an existing file unless on_collision is
 * "overwrite"), and the folder is fsynced once. A re-delivery after a crash
 * recognizes its own earlier output by that mark, never by name and
 * content (two different messages may share both): a file system without
 * user extended attributes gets a second copy instead (at-least-once).
 *
 * Folders: every folder lies under wharf.conf's allowed_paths and outside
 * the data dir (util/confine.h). Each poll and each delivery batch opens
 * its folders afresh through confine_open_dir (no symlink beneath the
 * root followed) and then works only relative to those fds, with names
 * that hold no "/".
 *
 * Must never: follow symlinks out of its folders; write outside send_dir;
 * acknowledge a source file before intake_commit succeeded; take another
 * message's file for its own.
 */
#include "connectors/connector.h"
#include "core/progress.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/intake.h"
#include "util/confine.h"
#include "util/fault.h"
#include "util/fsx.h"

#define MAX_TAKE_PER_POLL 8192
#define MAX_RENAME_SUFFIX 1000
#define MARK_XATTR "user.wharf.message"

enum collision { COLLIDE_RENAME, COLLIDE_OVERWRITE, COLLIDE_FAIL };

struct seen {
    char *name;
    off_t size;
    struct timespec mtime;
    ino_t ino;
    int stable;
};

/* The acknowledgement (delete or archive) of one committed batch runs on
 * its own thread while the next batch is read in: deleting can wait on the
 * disk (discard), and nothing depends on it but the next scan, which starts
 * only after ack_wait(). */
struct ack_job {
    struct connector *c;
    int rfd, afd;               /* receive_dir, archive_dir (owned) */
    char **names;
    char (*ids)[ID_LEN + 1];
    size_t n;
    pthread_t thread;
    int running;
};

struct file_state {
    const char *receive_dir, *pattern, *archive_dir, *send_dir;
    int archive;
    enum collision collision;
    struct seen *seen;          /* files seen on the last poll, by name */
    size_t nseen;
    struct ack_job ack;
    int rfd;                    /* receive_dir during a poll, else -1 */
    int unmarked_warned;        /* said once that marks are unsupported */
};

/* ---- config --------------------------------------------------------------- */

static void ack_wait(struct file_state *fs);

/* A folder the config names: allowed (confine.h) and a folder. */
static int dir_ok(const char *key, const char *path, struct stat *sb,
                  struct error *err)
{
    int fd = confine_open_dir(key, path, err);
    if (fd < 0)
        return -1;
    int rc = fstat(fd, sb) < 0 ? error_errno(err, errno, "%s %s", key, path)
                               : 0;
    close(fd);
    return rc;
}

/* A file-name glob: not empty, no '/'. */
static int pattern_valid(const char *key, const json_t *v, struct error *err)
{
    const char *pat = json_string_value(v);
    if (pat[0] == '\0' || strchr(pat, '/'))
        return error_set(err, "%s must be a file-name glob without '/'", key);
    return 0;
}

static const struct conn_option FILE_OPTIONS[] = {
    { "receive_dir", CONN_FOLDER, 0, NULL, 0, 0, NULL, NULL,
      "source: poll this folder (under wharf.conf's allowed_paths)", NULL },
    { "pattern", CONN_STRING, 0, "*", 0, 0, NULL, NULL,
      "source: take only names matching this glob (fnmatch)",
      pattern_valid },
    { "after", CONN_ENUM, 0, "delete", 0, 0, "delete|archive", NULL,
      "source: what to do with a file once its message is stored",
      NULL },
    { "archive_dir", CONN_FOLDER, 0, NULL, 0, 0, NULL, NULL,
      "source, after \"archive\": move taken files here (same file "
      "system as receive_dir)", NULL },
    { "send_dir", CONN_FOLDER, 0, NULL, 0, 0, NULL, NULL,
      "destination: write messages here", NULL },
    { "on_collision", CONN_ENUM, 0, "rename", 0, 0, "rename|overwrite|fail",
      NULL, "destination: when a file of that name exists (rename: "
      "name_1.ext, name_2.ext ...)", NULL },
    { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL, NULL },
};

static int check_source(const json_t *cfg, const char *rdir, struct error *err)
{
    const char *after = json_string_value(json_object_get(cfg, "after"));
    const char *adir = json_string_value(json_object_get(cfg, "archive_dir"));
    struct stat rs, as;
    if (dir_ok("receive_dir", rdir, &rs, err) < 0)
        return -1;
    if (after && !strcmp(after, "archive")) {
        if (adir == NULL)
            return error_set(err, "after \"archive\" needs archive_dir");
        if (dir_ok("archive_dir", adir, &as, err) < 0)
            return -1;
        if (as.st_dev != rs.st_dev)
            return error_set(err, "archive_dir %s must be on the same file "
                             "system as receive_dir %s", adir, rdir);
    }
    return 0;
}

/* What FILE_OPTIONS cannot say: one of the folders, existing folders, the
 * archive on the same file system. */
static int file_check(const json_t *cfg, struct error *err)
{
    const char *rdir = json_string_value(json_object_get(cfg, "receive_dir"));
    const char *sdir = json_string_value(json_object_get(cfg, "send_dir"));
    struct stat sb;
    if (rdir == NULL && sdir == NULL)
        return error_set(err, "needs receive_dir (source), send_dir "
                         "(destination) or both");
    if (rdir && check_source(cfg, rdir, err) < 0)
        return -1;
    if (sdir && dir_ok("send_dir", sdir, &sb, err) < 0)
        return -1;
    return 0;
}

static int file_is_source(const json_t *cfg)
{
    return json_object_get(cfg, "receive_dir") != NULL;
}

static enum wh_status file_open(struct connector *c, struct error *err)
{
    struct file_state *fs = calloc(1, sizeof(*fs));
    if (fs == NULL) {
        error_set(err, "out of memory");
        return WH_FAIL;
    }
    fs->receive_dir = conn_str(c, "receive_dir");   /* owned by c->config */
    fs->send_dir = conn_str(c, "send_dir");
    fs->pattern = conn_str(c, "pattern");
    fs->archive_dir = conn_str(c, "archive_dir");
    fs->archive = !strcmp(conn_str(c, "after"), "archive");
    const char *coll = conn_str(c, "on_collision");
    fs->collision = !strcmp(coll, "rename") ? COLLIDE_RENAME
                  : !strcmp(coll, "overwrite") ? COLLIDE_OVERWRITE : COLLIDE_FAIL;
    fs->rfd = -1;
    fs->ack.rfd = fs->ack.afd = -1;
    c->state = fs;
    return WH_OK;
}

static void seen_free(struct seen *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].name);
    free(s);
}

static void file_close(struct connector *c)
{
    struct file_state *fs = c->state;
    ack_wait(fs);
    seen_free(fs->seen, fs->nseen);
    free(fs);
    c->state = NULL;
}

/* ---- source ------------------------------------------------------------------ */

static int same_file(const struct seen *a, const struct stat *sb)
{
    return a->size == sb->st_size && a->ino == sb->st_ino &&
           a->mtime.tv_sec == sb->st_mtim.tv_sec &&
           a->mtime.tv_nsec == sb->st_mtim.tv_nsec;
}

static int seen_by_name(const void *a, const void *b)
{
    return strcmp(((const struct seen *)a)->name,
                  ((const struct seen *)b)->name);
}

/* fs->seen is sorted by name: O(log n) per look-up. */
static const struct seen *seen_find(const struct file_state *fs,
                                    const char *name)
{
    struct seen key = { .name = (char *)name };
    return fs->nseen ? bsearch(&key, fs->seen, fs->nseen, sizeof(key),
                               seen_by_name) : NULL;
}

/* Oldest first, then by name: the order files are taken in. */
static int seen_by_age(const void *a, const void *b)
{
    const struct seen *x = *(const struct seen *const *)a;
    const struct seen *y = *(const struct seen *const *)b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int seen_add(struct seen **v, size_t *n, size_t *cap, const char *name,
                    const struct stat *sb, int stable)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void *p = realloc(*v, nc * sizeof(**v));
        if (p == NULL)
            return -1;
        *v = p;
        *cap = nc;
    }
    struct seen *s = &(*v)[*n];
    if ((s->name = strdup(name)) == NULL)
        return -1;
    s->size = sb->st_size;
    s->mtime = sb->st_mtim;
    s->ino = sb->st_ino;
    s->stable = stable;
    (*n)++;
    return 0;
}

/* Scan receive_dir: replace fs->seen with what is there now, marking the
 * files that are unchanged since the last scan as stable. */
static int scan(struct connector *c, struct file_state *fs, struct error *err)
{
    int dfd = dup(fs->rfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        if (dfd >= 0)
            close(dfd);
        return error_errno(err, errno, "cannot read receive_dir %s",
                           fs->receive_dir);
    }
    rewinddir(d);
    struct seen *now = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat sb;
        if (de->d_name[0] == '.' || fnmatch(fs->pattern, de->d_name, 0) != 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        const struct seen *before = seen_find(fs, de->d_name);
        rc = seen_add(&now, &n, &cap, de->d_name, &sb,
                      before && same_file(before, &sb));
    }
    closedir(d);
    if (rc < 0) {
        seen_free(now, n);
        return error_set(err, "out of memory");
    }
    seen_free(fs->seen, fs->nseen);
    fs->seen = now;
    fs->nseen = n;
    if (n > 1)
        qsort(fs->seen, n, sizeof(*fs->seen), seen_by_name);
    conn_log(c, LOG_TRACE, NULL, "scanned %s: %zu matching file(s)",
             fs->receive_dir, n);
    return 0;
}

/* Open a stable file and add it to the intake. 1 added, 0 skipped, -1
 * error (the batch must not be committed). */
static int take_one(struct connector *c, struct file_state *fs,
                    struct intake *in, struct seen *s, struct error *err)
{
    char key[600];
    int fd = openat(fs->rfd, s->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
                    O_NONBLOCK);
    if (fd < 0) {
        conn_log(c, LOG_DEBUG, NULL, "%s vanished or unreadable: %s", s->name,
                 strerror(errno));
        s->stable = 0;
        return 0;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || !same_file(s, &sb)) {
        close(fd);
        s->stable = 0;      /* changed under us: wait for it to settle */
        return 0;
    }
    snprintf(key, sizeof(key), "%s|%lld|%lld.%09ld", s->name,
             (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
             sb.st_mtim.tv_nsec);
    int rc = intake_add_fd(in, fd, s->name, key, err);
    close(fd);
    return rc < 0 ? -1 : 1;
}

/* Delete or archive a committed file. */
static void acknowledge(struct connector *c, const struct ack_job *a,
                        const char *name, const char *id)
{
    struct file_state *fs = c->state;
    char dest[600];
    if (!fs->archive) {
        if (unlinkat(a->rfd, name, 0) < 0 && errno != ENOENT)
            conn_log(c, LOG_ERROR, id, "stored, but cannot delete %s/%s: %s",
                     fs->receive_dir, name, strerror(errno));
        return;
    }
    if (renameat2(a->rfd, name, a->afd, name, RENAME_NOREPLACE) == 0)
        return;
    if (errno == EEXIST) {
        snprintf(dest, sizeof(dest), "%s.%s", name, id);
        if (renameat(a->rfd, name, a->afd, dest) == 0)
            return;
    }
    conn_log(c, LOG_ERROR, id, "stored, but cannot archive %s/%s: %s",
             fs->receive_dir, name, strerror(errno));
}

static void ack_free(struct ack_job *a)
{
    if (a->rfd >= 0)
        close(a->rfd);
    if (a->afd >= 0)
        close(a->afd);
    a->rfd = a->afd = -1;
    for (size_t i = 0; i < a->n; i++)
        free(a->names[i]);
    free(a->names);
    free(a->ids);
    a->names = NULL;
    a->ids = NULL;
    a->n = 0;
}

static void *ack_main(void *arg)
{
    struct ack_job *a = arg;
    struct file_state *fs = a->c->state;
    struct error err = {0};
    for (size_t i = 0; i < a->n; i++)
        acknowledge(a->c, a, a->names[i], a->ids[i]);
    /* Not needed for safety (a re-appearing file is a known duplicate),
     * but keeps a power cut from bringing back many of them. */
    if (fsync(a->rfd) < 0 || (a->afd >= 0 && fsync(a->afd) < 0)) {
        error_errno(&err, errno, "cannot sync %s", fs->receive_dir);
        conn_log(a->c, LOG_WARNING, NULL, "%s", err.msg);
    }
    return NULL;
}

/* Wait for the acknowledgement thread of the previous batch. */
static void ack_wait(struct file_state *fs)
{
    if (fs->ack.running)
        pthread_join(fs->ack.thread, NULL);
    fs->ack.running = 0;
    ack_free(&fs->ack);
}

/* Hand the committed batch in `in` to a new acknowledgement thread (or do
 * it here if no thread can be had). */
static void ack_start(struct connector *c, struct file_state *fs,
                      struct intake *in)
{
    struct ack_job *a = &fs->ack;
    size_t n = intake_count(in);
    struct error err = {0};
    ack_wait(fs);
    a->c = c;
    a->rfd = dup(fs->rfd);
    a->afd = fs->archive ? confine_open_dir("archive_dir", fs->archive_dir,
                                            &err) : -1;
    if (a->rfd < 0 || (fs->archive && a->afd < 0)) {
        /* the files stay and are recognized as duplicates next time */
        conn_log(c, LOG_ERROR, NULL, "stored, but cannot acknowledge: %s",
                 a->rfd < 0 ? strerror(errno) : err.msg);
        ack_free(a);
        return;
    }
    a->names = calloc(n + 1, sizeof(*a->names));
    a->ids = calloc(n + 1, sizeof(*a->ids));
    for (size_t i = 0; a->names && a->ids && i < n; i++) {
        const char *dup = intake_duplicate(in, i);
        const char *id = dup ? dup : intake_id(in, i);
        const char *name = intake_filename(in, i);
        conn_log(c, dup ? LOG_INFO : LOG_DEBUG, id, dup
                 ? "%s is a duplicate of stored message %s; not stored again"
                 : "picked up %s", name, id);
        if ((a->names[a->n] = strdup(name)) == NULL)
            break;
        snprintf(a->ids[a->n++], ID_LEN + 1, "%s", id);
    }
    if (a->names && a->ids &&
        pthread_create(&a->thread, NULL, ack_main, a) == 0) {
        a->running = 1;
        return;
    }
    ack_main(a);    /* no thread: acknowledge inline */
    ack_free(a);
}

/* Commit the intake; its files are then acknowledged in the background. */
static int commit_batch(struct connector *c, struct file_state *fs,
                        struct intake *in, struct error *err)
{
    if (intake_count(in) == 0)
        return 0;
    if (intake_commit(in, err) < 0)
        return -1;
    ack_start(c, fs, in);
    intake_reset(in);
    return 0;
}

/* Stable files, oldest first (pointers into fs->seen). Caller frees. */
static struct seen **stable_files(struct file_state *fs, size_t *n)
{
    struct seen **v = calloc(fs->nseen + 1, sizeof(*v));
    *n = 0;
    for (size_t i = 0; v && i < fs->nseen; i++)
        if (fs->seen[i].stable == 1)
            v[(*n)++] = &fs->seen[i];
    if (v && *n > 1)
        qsort(v, *n, sizeof(*v), seen_by_age);
    return v;
}

static enum wh_status take_stable(struct connector *c, struct file_state *fs,
                                  struct intake *in, struct error *err,
                                  size_t *taken)
{
    size_t n;
    struct seen **v = stable_files(fs, &n);
    int batch = c->env ? c->env->settings->batch : 256, inbatch = 0;
    enum wh_status st = WH_OK;
    if (v == NULL)
        return error_set(err, "out of memory"), WH_RETRY;
    for (size_t i = 0; i < n && *taken < MAX_TAKE_PER_POLL; i++) {
        int rc = take_one(c, fs, in, v[i], err);
        if (rc < 0) {
            intake_reset(in);
            st = WH_RETRY;
            break;
        }
        inbatch += rc;
        *taken += (size_t)rc;
        if (inbatch >= batch) {
            if (commit_batch(c, fs, in, err) < 0) {
                st = WH_RETRY;
                break;
            }
            inbatch = 0;
        }
    }
    free(v);
    if (st == WH_OK && commit_batch(c, fs, in, err) < 0)
        st = WH_RETRY;
    return st;
}

static enum wh_status file_poll(struct connector *c, struct intake *in,
                                struct error *err)
{
    struct file_state *fs = c->state;
    size_t taken = 0;
    if (fs->receive_dir == NULL)
        return WH_DECLINED;
    fs->rfd = confine_open_dir("receive_dir", fs->receive_dir, err);
    if (fs->rfd < 0)
        return WH_RETRY;
    enum wh_status st = scan(c, fs, err) < 0 ? WH_RETRY
                      : take_stable(c, fs, in, err, &taken);
    ack_wait(fs);       /* the next scan must not see acknowledged files */
    close(fs->rfd);
    fs->rfd = -1;
    if (st != WH_OK)
        return st;
    return taken ? WH_OK : WH_DECLINED;
}

/* ---- destination ------------------------------------------------------------ */

/* A safe file name for the message: its own name without any folder part
 * or control characters, else the message id. */
static void target_name(const struct message *m, char *out, size_t n)
{
    const char *f = m->filename ? m->filename : "";
    const char *slash = strrchr(f, '/');
    if (slash)
        f = slash + 1;
    int ok = f[0] != '\0' && f[0] != '.' && strlen(f) < 200;
    for (const char *p = f; ok && *p; p++)
        ok = (unsigned char)*p >= 0x20 && *p != 0x7f && *p != '\\';
    snprintf(out, n, "%s", ok ? f : m->id);
}

/* name, or name_k.ext for k > 0 */
static void suffixed(const char *name, int k, char *out, size_t n)
{
    if (k == 0) {
        snprintf(out, n, "%s", name);
        return;
    }
    const char *dot = strrchr(name, '.');
    if (dot == NULL || dot == name)
        snprintf(out, n, "%s_%d", name, k);
    else
        snprintf(out, n, "%.*s_%d%s", (int)(dot - name), name, k, dot);
}

/* 1 when the file name in folder sfd carries the mark of message id. */
static int marked_by(int sfd, const char *name, const char *id)
{
    int fd = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
                    O_NONBLOCK);
    if (fd < 0)
        return 0;
    char got[ID_LEN + 1];
    ssize_t n = fgetxattr(fd, MARK_XATTR, got, ID_LEN);
    close(fd);
    return n == (ssize_t)strlen(id) && memcmp(got, id, (size_t)n) == 0;
}

/* Already delivered (by an attempt that crashed before it was recorded)?
 * Only a file marked with this message's id counts. */
static int already_there(const struct file_state *fs, int sfd,
                         const struct message *m, const char *name,
                         char *found, size_t n)
{
    int last = fs->collision == COLLIDE_RENAME ? MAX_RENAME_SUFFIX : 0;
    for (int k = 0; k <= last; k++) {
        char cand[300];
        struct stat sb;
        suffixed(name, k, cand, sizeof(cand));
        if (fstatat(sfd, cand, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            return 0;
        if (marked_by(sfd, cand, m->id)) {
            snprintf(found, n, "%s/%s", fs->send_dir, cand);
            return 1;
        }
    }
    return 0;
}

struct pending {
    int fd;
    char tmp[ID_LEN + 16];      /* ".wharf-<id>.tmp" in send_dir */
    char name[256];
};

static int write_all(int fd, const unsigned char *p, size_t n)
{
    int injected = fault_fail("file.write");        /* test hook: fault.h */
    if (injected) {
        errno = injected;
        return -1;
    }
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Mark the temp file fd as message id's (see the top of the file). */
static void mark(struct connector *c, struct file_state *fs, int fd,
                 const char *id)
{
    if (fsetxattr(fd, MARK_XATTR, id, strlen(id), 0) == 0 ||
        fs->unmarked_warned)
        return;
    fs->unmarked_warned = 1;
    conn_log(c, LOG_WARNING, id, "send_dir %s does not keep extended "
             "attributes (%s): after a crash a message may be written twice",
             fs->send_dir, strerror(errno));
}

/* Decrypt the payload into p->tmp. Sets d->status on failure. */
static int write_temp(struct connector *c, struct file_state *fs, int sfd,
                      struct delivery *d, struct pending *p)
{
    /* On the heap, not in static TLS (see intake_add_fd). */
    unsigned char *buf = malloc(MESSAGE_PAYLOAD_CHUNK);
    if (buf == NULL) {
        error_set(&d->err, "out of memory");
        d->status = WH_RETRY;
        return -1;
    }
    snprintf(p->tmp, sizeof(p->tmp), ".wharf-%s.tmp", d->msg->id);
    p->fd = openat(sfd, p->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
                   O_CLOEXEC, 0640);
    if (p->fd < 0) {
        error_errno(&d->err, errno, "cannot create a file in send_dir %s",
                    fs->send_dir);
        d->status = WH_RETRY;
        free(buf);
        return -1;
    }
    mark(c, fs, p->fd, d->msg->id);
    struct payload_reader *r = message_payload_open(d->msg, &d->err);
    ssize_t got = r ? 1 : -1;
    progress_begin(d->msg->id, c->name, "send", d->msg->size);
    while (got > 0) {
        got = message_payload_read(r, buf, MESSAGE_PAYLOAD_CHUNK, &d->err);
        if (got > 0)
            progress_add(got);
        if (got > 0 && write_all(p->fd, buf, (size_t)got) < 0) {
            error_errno(&d->err, errno, "cannot write %s/%s", fs->send_dir,
                        p->tmp);
            d->status = WH_RETRY;
            break;
        }
    }
    progress_end();
    message_payload_close(r);
    free(buf);
    if (got < 0)
        d->status = WH_FAIL;    /* the stored payload is bad: retrying won't help */
    if (got == 0)
        return 0;
    close(p->fd);
    p->fd = -1;
    unlinkat(sfd, p->tmp, 0);
    return -1;
}

/* Move a synced temp file to its final name per the collision policy. */
static void place(struct connector *c, struct file_state *fs, int sfd,
                  struct delivery *d, struct pending *p)
{
    char path[4400], cand[300];
    int last = fs->collision == COLLIDE_RENAME ? MAX_RENAME_SUFFIX : 0;
    for (int k = 0; k <= last; k++) {
        suffixed(p->name, k, cand, sizeof(cand));
        snprintf(path, sizeof(path), "%s/%s", fs->send_dir, cand);
        int injected = fault_fail("file.rename");   /* test hook: fault.h */
        if (injected) {
            errno = injected;
            break;
        }
        int rc = fs->collision == COLLIDE_OVERWRITE
            ? renameat(sfd, p->tmp, sfd, cand)
            : renameat2(sfd, p->tmp, sfd, cand, RENAME_NOREPLACE);
        if (rc == 0) {
            d->status = WH_OK;
            snprintf(d->receipt, sizeof(d->receipt), "written to %.200s", path);
            conn_log(c, LOG_DEBUG, d->msg->id, "wrote %s", path);
            return;
        }
        if (errno != EEXIST)
            break;
    }
    if (errno == EEXIST) {
        error_set(&d->err, "%s/%s already exists (on_collision is \"%s\")",
                  fs->send_dir, p->name, last ? "rename, and all suffixes are taken"
                  : "fail");
        d->status = WH_FAIL;
    } else {
        error_errno(&d->err, errno, "cannot rename into %s", path);
        d->status = WH_RETRY;
    }
    unlinkat(sfd, p->tmp, 0);
}

static void fail_all(struct delivery *d, size_t n, enum wh_status st,
                     const struct error *err)
{
    for (size_t i = 0; i < n; i++) {
        d[i].status = st;
        d[i].err = *err;
    }
}

/* Write, sync and place the batch in folder sfd. */
static void deliver_in(struct connector *c, struct file_state *fs, int sfd,
                       struct delivery *d, size_t n, struct pending *p,
                       int *fds)
{
    size_t nf = 0;
    struct error err = {0};
    for (size_t i = 0; i < n; i++) {
        char found[4400];
        p[i].fd = -1;
        d[i].status = WH_AGAIN;
        target_name(d[i].msg, p[i].name, sizeof(p[i].name));
        if (already_there(fs, sfd, d[i].msg, p[i].name, found,
                          sizeof(found))) {
            d[i].status = WH_OK;
            snprintf(d[i].receipt, sizeof(d[i].receipt),
                     "already present as %.200s", found);
            continue;
        }
        if (write_temp(c, fs, sfd, &d[i], &p[i]) == 0)
            fds[nf++] = p[i].fd;
    }
    int synced = fsx_sync_fds(fds, nf, &err) == 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].fd < 0)
            continue;
        close(p[i].fd);
        if (synced) {
            place(c, fs, sfd, &d[i], &p[i]);
        } else {
            d[i].err = err;
            d[i].status = WH_RETRY;
            unlinkat(sfd, p[i].tmp, 0);
        }
    }
    if (nf > 0 && fsync(sfd) < 0) {
        error_errno(&err, errno, "cannot sync send_dir %s", fs->send_dir);
        for (size_t i = 0; i < n; i++)
            if (d[i].status == WH_OK) {
                d[i].status = WH_RETRY;     /* the next try finds it in place */
                d[i].err = err;
            }
    }
}

static void file_deliver_batch(struct connector *c, struct delivery *d,
                               size_t n)
{
    struct file_state *fs = c->state;
    struct error err = {0};
    if (fs->send_dir == NULL) {
        error_set(&err, "connector has no send_dir");
        fail_all(d, n, WH_FAIL, &err);
        return;
    }
    int sfd = confine_open_dir("send_dir", fs->send_dir, &err);
    struct pending *p = calloc(n + 1, sizeof(*p));
    int *fds = calloc(n + 1, sizeof(int));
    if (sfd < 0 || p == NULL || fds == NULL) {
        if (sfd >= 0)
            error_set(&err, "out of memory");
        fail_all(d, n, WH_RETRY, &err);
    } else {
        deliver_in(c, fs, sfd, d, n, p, fds);
    }
    if (sfd >= 0)
        close(sfd);
    free(p);
    free(fds);
}

static enum wh_status file_deliver(struct connector *c, struct delivery *d)
{
    file_deliver_batch(c, d, 1);
    return d->status;
}

/* The folder key names can be opened and written (and read). */
static int folder_usable(const char *key, const char *path, int mode,
                         struct error *err)
{
    int fd = confine_open_dir(key, path, err);
    if (fd < 0)
        return -1;
    int rc = faccessat(fd, ".", mode, AT_EACCESS) < 0
           ? error_errno(err, errno, "%s %s", key, path) : 0;
    close(fd);
    return rc;
}

static enum wh_status file_test(struct connector *c, struct error *err)
{
    struct file_state *fs = c->state;
    if (fs->receive_dir && folder_usable("receive_dir", fs->receive_dir,
                                         R_OK | W_OK | X_OK, err) < 0)
        return WH_FAIL;
    if (fs->send_dir && folder_usable("send_dir", fs->send_dir, W_OK | X_OK,
                                      err) < 0)
        return WH_FAIL;
    return WH_OK;
}

static const struct conn_action FILE_ACTIONS[] = {
    CONN_ACTION_TEST,
    { NULL, NULL, 0, NULL, NULL, NULL, NULL },
};

const struct connector_type connector_file = {
    .name = "file",
    .summary = "a local folder as a source, a destination, or both (M3)",
    .options = FILE_OPTIONS,
    .actions = FILE_ACTIONS,
    .is_source = file_is_source,
    .check = file_check,
    .open = file_open,
    .poll = file_poll,
    .deliver = file_deliver,
    .deliver_batch = file_deliver_batch,
    .test = file_test,
    .close = file_close,
};
