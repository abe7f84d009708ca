/*
 * payload_sweep.c - payloads that no message names, removed by the purge
 * (payloads.h, wharf_payloads_sweep).
 *
 * How they come about: the intake writes and syncs a message's payload
 * before it commits the message (core/intake.c). A node killed between
 * the two leaves a payload that no message names; so does a commit whose
 * outcome the intake could not learn (the database unreachable after a
 * failed COMMIT: the intake keeps the payload, since the message may be
 * stored). Neither is ever read again, and each holds a document, sealed,
 * until it is removed.
 *
 * Rows (payload_dir = database): the store deletes those older than the
 * cut-off (store_payload_sweep).
 *
 * Files: the day folders of payload_dir (YYYYMMDD, the UTC day of the
 * intake) hold <id>.wpay. A file is removed when all of these hold:
 *  - its name is a message id and ".wpay", it is a regular file (not a
 *    link), last written before the cut-off (an intake takes seconds;
 *    the purge passes six hours);
 *  - the store has no message of that id (an erased or purged message's
 *    payload is shredded by the erasure or the purge itself);
 *  - it is this keystore's payload of that id: its header unwraps for
 *    that id (or it is shorter than a header: killed before its key was
 *    written, nobody can read it). A file someone put there, or another
 *    installation's in a folder shared by mistake, is left, with a
 *    warning.
 * Removal is payload_destroy's crypto-shredding (header zeroed and
 * synced, then unlinked).
 *
 * Only real folders are entered: a link named like a day is passed over.
 *
 * Each sweep looks only at files last written since the previous sweep's
 * cut-off (the setting payload_sweep_mark, ms since the epoch; the first
 * sweep looks at every file), in the day folders that can hold them (a
 * day's folder is written during that day: one ending more than a day
 * before the mark is passed over). An hourly purge so stats the files of
 * a day or two and looks up only those written since its last run; a
 * node that was down for a week catches up at its first purge. The mark
 * moves only after a sweep that met no error (a file left as not ours is
 * no error: it is reported once).
 *
 * Runs in the purge, on the node that leads it (a shared payload folder
 * is swept by one node). Owns nothing beyond each call.
 */
#include "core/payloads.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/wharf.h"
#include "store/payload_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"

#define SWEEP_MARK "payload_sweep_mark"
#define DAY_MS (24 * 3600 * 1000LL)

struct sweep {
    struct wharf *w;
    struct store *st;
    int64_t from, before;       /* files last written in [from, before) */
    int64_t removed;
    int failed;                 /* an error: the mark stays */
    struct error store_err;     /* the store failed: the sweep stops */
    int store_failed;
};

/* The previous sweep's cut-off (0: none yet). -1 with err. */
static int64_t mark_get(struct store *st, struct error *err)
{
    char *v = NULL;
    if (store_setting_get(st, SWEEP_MARK, &v, err) < 0)
        return -1;
    int64_t m = v ? strtoll(v, NULL, 10) : 0;
    free(v);
    return m > 0 ? m : 0;
}

static int mark_set(struct store *st, int64_t before, struct error *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%lld", (long long)before);
    return store_setting_set(st, SWEEP_MARK, v, err);
}

/* The start (ms, UTC) of day folder name YYYYMMDD; -1 for another name. */
static int64_t day_start(const char *name)
{
    if (strlen(name) != 8 || strspn(name, "0123456789") != 8)
        return -1;
    long ymd = strtol(name, NULL, 10);      /* 8 digits: fits */
    struct tm tm = { .tm_year = (int)(ymd / 10000 - 1900),
                     .tm_mon = (int)(ymd / 100 % 100 - 1),
                     .tm_mday = (int)(ymd % 100) };
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t * 1000;
}

/* The message id of payload file name "<id>.wpay", or 0. */
static int payload_name(const char *name, char id[ID_LEN + 1])
{
    if (strlen(name) != ID_LEN + 5 || strcmp(name + ID_LEN, ".wpay") != 0)
        return 0;
    memcpy(id, name, ID_LEN);
    id[ID_LEN] = '\0';
    return id_valid(id);
}

/* Whether file name in folder dfd is this keystore's payload of id (or
 * too short to be anyone's); the reason for a refusal is logged. */
static int sweep_ours(struct sweep *s, int dfd, const char *name,
                      const char *id, const char *rel)
{
    unsigned char hdr[VAULT_PAYLOAD_HEADER_LEN];
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ssize_t k = fd < 0 ? -1 : pread(fd, hdr, sizeof(hdr), 0);
    int why = errno;
    if (fd >= 0)
        close(fd);
    if (k >= 0 && k < (ssize_t)sizeof(hdr))
        return 1;
    struct error e = {0};
    if (k < 0)
        error_errno(&e, why, "cannot read it");
    else if (payload_header_check(s->w->vault, hdr, (size_t)k, id, &e) == 0)
        return 1;
    log_warn("purge: %s: no message %s, but not this keystore's payload of "
             "it, left in place: %s", rel, id, e.msg);
    return 0;
}

/* One file of day folder `day` (fd dfd): removed when it is an orphan of
 * ours written in the window. */
static void sweep_file(struct sweep *s, int dfd, const char *day,
                       const char *name)
{
    char id[ID_LEN + 1], rel[96];
    struct stat sb;
    if (!payload_name(name, id) ||
        fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(sb.st_mode))
        return;
    int64_t at = (int64_t)sb.st_mtim.tv_sec * 1000 +
                 sb.st_mtim.tv_nsec / 1000000;
    if (at < s->from || at >= s->before)
        return;
    struct store_message m;
    struct error err = {0};
    int rc = store_message_get(s->st, id, &m, &s->store_err);
    if (rc == 0)
        store_message_clear(&m);
    if (rc < 0)
        s->store_failed = 1;
    snprintf(rel, sizeof(rel), "payloads/%s/%s", day, name);
    if (rc != 1 || !sweep_ours(s, dfd, name, id, rel))
        return;
    if (wharf_payload_destroy(s->w, rel, &err) < 0) {
        log_error("purge: %s: %s", rel, err.msg);
        s->failed = 1;
        return;
    }
    log_info("purge: %s shredded: no message %s (an intake cut short)", rel,
             id);
    s->removed++;
}

static void sweep_day(struct sweep *s, int pfd, const char *day)
{
    int dfd = openat(pfd, day, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
                     O_NOFOLLOW);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (d == NULL) {
        if (dfd >= 0)
            close(dfd);
        log_error("purge: cannot read payload folder %s: %s", day,
                  strerror(errno));
        s->failed = 1;
        return;
    }
    struct dirent *e;
    while (!s->store_failed && (e = readdir(d)) != NULL)
        sweep_file(s, dfd, day, e->d_name);
    closedir(d);
}

static int sweep_files(struct sweep *s, struct error *err)
{
    DIR *p = opendir(s->w->payload_dir);
    if (p == NULL)
        return errno == ENOENT ? 0 : error_errno(err, errno,
                                    "cannot read %s", s->w->payload_dir);
    struct dirent *e;
    struct stat sb;
    while (!s->store_failed && (e = readdir(p)) != NULL) {
        int64_t start = day_start(e->d_name);
        if (start >= 0 && start + 2 * DAY_MS > s->from &&
            start <= s->before &&
            fstatat(dirfd(p), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISDIR(sb.st_mode))        /* not a link: never followed */
            sweep_day(s, dirfd(p), e->d_name);
    }
    closedir(p);
    if (s->store_failed)
        return error_set(err, "cannot tell which payload files are "
                         "orphans: %s", s->store_err.msg);
    if (s->failed)
        return error_set(err, "some payload files could not be checked "
                         "or removed (logged above)");
    return mark_set(s->st, s->before, err);
}

int wharf_payloads_sweep(struct wharf *w, struct store *st,
                         int64_t before_ms, int64_t *n, struct error *err)
{
    *n = 0;
    if (w->payloads_in_db)
        return store_payload_sweep(st, before_ms, n, err);
    struct sweep s = { .w = w, .st = st, .before = before_ms };
    if ((s.from = mark_get(st, err)) < 0)
        return -1;
    if (s.from >= before_ms)
        return 0;
    int rc = sweep_files(&s, err);
    *n = s.removed;
    return rc;
}
