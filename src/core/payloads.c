/*
 * payloads.c - where a node keeps its payloads (payloads.h): files under
 * payload_dir, or rows of the PostgreSQL store (payload_dir = database).
 *
 * It owns the pool of store connections that payload streams use (struct
 * payload_pool, hung on struct wharf) and each stream's context (struct
 * dbio: its connection, its row buffer) from the moment it is handed to
 * the vault as a payload_io until the vault releases it.
 *
 * Rows: seq 0 is the 92-byte header, then one row per sealed segment
 * (64 KiB + tag; the final one shorter). The vault writes the header and
 * each segment with one write each, so a row is one write; the buffer
 * below only guards against a writer that cuts its bytes otherwise.
 *
 * Must never: hand a connection to two streams at once, keep a writer's
 * transaction open after its release, or build a path from anything but
 * a message's payload_path.
 */
#include "core/payloads.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/wharf.h"
#include "store/payload_store.h"
#include "store/store.h"

#define POOL_IDLE_MAX 8
#define DBIO_ROW VAULT_PAYLOAD_SEALED_SEGMENT
/* Rows a reader fetches with its first statement: a payload of up to
 * 128 KiB (header and two segments) is read in one round trip. */
#define DBIO_HEAD_ROWS 3

struct payload_pool {
    pthread_mutex_t mu;
    struct store *idle[POOL_IDLE_MAX];
    size_t n;
};

static pthread_mutex_t pool_make = PTHREAD_MUTEX_INITIALIZER;

/* ---- the pool ---------------------------------------------------------------- */

static struct payload_pool *pool_of(struct wharf *w, struct error *err)
{
    pthread_mutex_lock(&pool_make);
    if (w->payload_pool == NULL) {
        struct payload_pool *p = calloc(1, sizeof(*p));
        if (p != NULL && pthread_mutex_init(&p->mu, NULL) != 0) {
            free(p);
            p = NULL;
        }
        w->payload_pool = p;
    }
    pthread_mutex_unlock(&pool_make);
    if (w->payload_pool == NULL)
        error_set(err, "out of memory");
    return w->payload_pool;
}

static struct store *pool_take(struct wharf *w, struct error *err)
{
    struct payload_pool *p = pool_of(w, err);
    if (p == NULL)
        return NULL;
    struct store *s = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        s = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    return s != NULL ? s : store_open(w->db_path, err);
}

static void pool_give(struct wharf *w, struct store *s)
{
    struct payload_pool *p = w->payload_pool;
    pthread_mutex_lock(&p->mu);
    if (p->n < POOL_IDLE_MAX) {
        p->idle[p->n++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    store_close(s);
}

void wharf_payloads_close(struct wharf *w)
{
    struct payload_pool *p = w->payload_pool;
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        store_close(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    free(p);
    w->payload_pool = NULL;
}

/* ---- a stream of rows ------------------------------------------------------ */

struct dbio {
    struct wharf *w;
    struct store *s;            /* from the pool, given back at release */
    char *rel;
    int64_t seq;                /* next row */
    int writing;
    int open_tx;                /* a transaction of s is ours to end */
    unsigned char *buf;         /* writer: the row being filled; reader:
                                   the row being handed out */
    size_t fill, want;          /* writer: bytes in buf, bytes of a row */
    size_t len, pos;            /* reader: bytes in buf, handed out */
    int64_t total;              /* reader: rows of the payload, -1 before
                                   the first statement */
    unsigned char *head[DBIO_HEAD_ROWS];    /* reader: rows fetched by it */
    size_t head_len[DBIO_HEAD_ROWS];
    int nhead;
};

static int dbio_put(struct dbio *d, const void *p, size_t n,
                    struct error *err)
{
    if (store_payload_put(d->s, d->rel, d->seq, p, n, err) < 0)
        return -1;
    d->seq++;
    d->want = DBIO_ROW;
    return 0;
}

static int dbio_write(void *ctx, const void *p, size_t n, struct error *err)
{
    struct dbio *d = ctx;
    const unsigned char *b = p;
    while (n > 0) {
        if (d->fill == 0 && n >= d->want) {         /* a whole row */
            size_t take = d->want;
            if (dbio_put(d, b, take, err) < 0)
                return -1;
            b += take;
            n -= take;
            continue;
        }
        size_t take = d->want - d->fill < n ? d->want - d->fill : n;
        memcpy(d->buf + d->fill, b, take);
        d->fill += take;
        b += take;
        n -= take;
        if (d->fill == d->want) {
            d->fill = 0;
            if (dbio_put(d, d->buf, d->want, err) < 0)
                return -1;
        }
    }
    return 0;
}

static int dbio_commit(void *ctx, struct error *err)
{
    struct dbio *d = ctx;
    if (d->fill > 0 && dbio_put(d, d->buf, d->fill, err) < 0)
        return -1;
    d->fill = 0;
    d->open_tx = 0;
    if (store_payload_commit(d->s, err) < 0) {
        error_prefix(err, "payload %s", d->rel);
        return -1;
    }
    return 0;
}

/* The first statement: the payload's first rows and its row count. */
static int dbio_head(struct dbio *d, struct error *err)
{
    int rc = store_payload_head(d->s, d->rel, DBIO_HEAD_ROWS, d->head,
                                d->head_len, &d->nhead, &d->total, err);
    if (rc == 1)
        return error_set(err, "payload %s is not in the database", d->rel);
    return rc;
}

/* The next row into buf: 0, 1 after the last, -1. Rows past the first
 * statement's are read in one snapshot (a transaction begun then); one
 * missing is a payload deleted meanwhile (erased or purged), an I/O
 * error, not tampering. */
static int dbio_next_row(struct dbio *d, struct error *err)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->pos = 0;
    if (d->total < 0 && dbio_head(d, err) < 0)
        return -1;
    if (d->seq < d->nhead) {
        d->buf = d->head[d->seq];
        d->len = d->head_len[d->seq];
        d->head[d->seq++] = NULL;
        return 0;
    }
    if (d->seq >= d->total)
        return 1;
    if (!d->open_tx && store_payload_read_begin(d->s, err) < 0)
        return -1;
    d->open_tx = 1;
    int rc = store_payload_get(d->s, d->rel, d->seq, &d->buf, &d->len, err);
    if (rc == 1)
        return error_errno(err, EIO, "payload %s was deleted while it was "
                           "read", d->rel);
    d->seq++;
    return rc;
}

static ssize_t dbio_read(void *ctx, void *p, size_t n, struct error *err)
{
    struct dbio *d = ctx;
    if (d->pos == d->len) {
        int rc = dbio_next_row(d, err);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
    }
    size_t take = d->len - d->pos < n ? d->len - d->pos : n;
    if (take > 0)
        memcpy(p, d->buf + d->pos, take);
    d->pos += take;
    return (ssize_t)take;
}

static void dbio_release(void *ctx, int discard)
{
    struct dbio *d = ctx;
    (void)discard;          /* rows not committed are rolled back */
    if (d->open_tx && d->writing)
        store_payload_rollback(d->s);
    else if (d->open_tx)
        store_payload_read_end(d->s);
    if (d->s != NULL)
        pool_give(d->w, d->s);
    for (int i = 0; i < d->nhead; i++)
        free(d->head[i]);
    free(d->buf);
    free(d->rel);
    free(d);
}

/* A stream on rel with its connection; NULL with err. A writer's
 * transaction begins here (synced: as store_payload_begin); a reader's
 * snapshot here when snapshot (before anything else is read, as a
 * backup's size and bytes must agree), else only if the payload has more
 * rows than its first statement reads. */
static struct dbio *dbio_new(struct wharf *w, const char *rel, int writing,
                             int synced, int snapshot, struct error *err)
{
    struct dbio *d = calloc(1, sizeof(*d));
    if (d == NULL || (d->rel = strdup(rel)) == NULL ||
        (writing && (d->buf = malloc(DBIO_ROW)) == NULL)) {
        if (d != NULL)
            free(d->rel);
        free(d);
        error_set(err, "out of memory");
        return NULL;
    }
    d->w = w;
    d->writing = writing;
    d->want = VAULT_PAYLOAD_HEADER_LEN;
    d->total = -1;
    d->s = pool_take(w, err);
    int rc = d->s == NULL ? -1
           : writing ? store_payload_begin(d->s, synced, err)
           : snapshot ? store_payload_read_begin(d->s, err) : 0;
    if (rc < 0) {
        dbio_release(d, 1);
        return NULL;
    }
    d->open_tx = writing || snapshot;
    return d;
}

static struct payload_io dbio_io(struct dbio *d)
{
    struct payload_io io = { .release = dbio_release, .ctx = d };
    if (d->writing) {
        io.write = dbio_write;
        io.commit = dbio_commit;
    } else {
        io.read = dbio_read;
    }
    return io;
}

/* ---- the entry points -------------------------------------------------------- */

static int file_of(struct wharf *w, const char *rel, char *path, size_t n,
                   struct error *err)
{
    if (rel == NULL || wharf_path(w, rel, path, n) < 0)
        return error_set(err, "payload path %s is missing or too long",
                         rel ? rel : "(none)");
    return 0;
}

struct payload_writer *wharf_payload_create(struct wharf *w, const char *rel,
                                            const char *msgid,
                                            struct error *err)
{
    char path[4300];
    if (!w->payloads_in_db)
        return file_of(w, rel, path, sizeof(path), err) < 0 ? NULL
               : payload_create(w->vault, path, msgid, err);
    /* not synced: the intake's commit of the message makes it durable */
    struct dbio *d = dbio_new(w, rel, 1, 0, 0, err);
    if (d == NULL)
        return NULL;
    struct payload_io io = dbio_io(d);
    return payload_create_io(w->vault, &io, msgid, err);
}

struct payload_reader *wharf_payload_open(struct wharf *w, const char *rel,
                                          const char *msgid,
                                          struct error *err)
{
    char path[4300];
    if (!w->payloads_in_db)
        return file_of(w, rel, path, sizeof(path), err) < 0 ? NULL
               : payload_open(w->vault, path, msgid, err);
    struct dbio *d = dbio_new(w, rel, 0, 0, 0, err);
    if (d == NULL)
        return NULL;
    struct payload_io io = dbio_io(d);
    return payload_open_io(w->vault, &io, msgid, err);
}

/* A connection of the pool for one statement or two (pool_give it). */
static int with_store(struct wharf *w, struct store **s, struct error *err)
{
    *s = pool_take(w, err);
    return *s != NULL ? 0 : -1;
}

int wharf_payload_destroy(struct wharf *w, const char *rel, struct error *err)
{
    char path[4300];
    struct store *s;
    if (!w->payloads_in_db)
        return file_of(w, rel, path, sizeof(path), err) < 0 ? -1
               : payload_destroy(path, err);
    if (with_store(w, &s, err) < 0)
        return -1;
    unsigned char zero[VAULT_PAYLOAD_HEADER_LEN] = {0};
    int rc = store_payload_replace(s, rel, 0, zero, sizeof(zero), err);
    if (rc >= 0)
        rc = store_payload_delete(s, rel, err);
    pool_give(w, s);
    return rc < 0 ? -1 : 0;
}

int wharf_payload_rewrap(struct wharf *w, const char *rel, const char *msgid,
                         struct error *err)
{
    char path[4300];
    struct store *s;
    if (!w->payloads_in_db) {
        if (file_of(w, rel, path, sizeof(path), err) < 0)
            return -1;
        if (access(path, F_OK) < 0 && errno == ENOENT)
            return 2;
        return payload_rewrap(w->vault, path, msgid, err);
    }
    if (with_store(w, &s, err) < 0)
        return -1;
    unsigned char *hdr = NULL;
    size_t n = 0;
    int rc = store_payload_get(s, rel, 0, &hdr, &n, err);
    if (rc == 1)
        rc = 2;                 /* erased or purged */
    else if (rc == 0)
        rc = payload_header_rewrap(w->vault, hdr, n, msgid, err);
    if (rc == 1 && store_payload_replace(s, rel, 0, hdr, n, err) != 0)
        rc = -1;
    free(hdr);
    pool_give(w, s);
    return rc;
}

/* ---- raw bytes of a file (backup) ------------------------------------------ */

static ssize_t fileio_read(void *ctx, void *p, size_t n, struct error *err)
{
    int fd = (int)(intptr_t)ctx;
    ssize_t r;
    do
        r = read(fd, p, n);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return error_errno(err, errno, "cannot read a payload file");
    return r;
}

static void fileio_release(void *ctx, int discard)
{
    (void)discard;
    close((int)(intptr_t)ctx);
}

static int file_raw(struct wharf *w, const char *rel, struct payload_io *io,
                    uint64_t *size, struct error *err)
{
    char path[4300];
    struct stat sb;
    if (file_of(w, rel, path, sizeof(path), err) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        int e = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        return error_errno(err, e, "cannot open payload %s", path);
    }
    *size = (uint64_t)sb.st_size;
    *io = (struct payload_io){ .read = fileio_read,
                               .release = fileio_release,
                               .ctx = (void *)(intptr_t)fd };
    return 0;
}

int wharf_payload_raw(struct wharf *w, const char *rel, int writing,
                      struct payload_io *io, uint64_t *size,
                      struct error *err)
{
    if (!w->payloads_in_db)
        return writing ? error_set(err, "internal: raw payload writers are "
                                   "for payload_dir = database")
                       : file_raw(w, rel, io, size, err);
    struct dbio *d = dbio_new(w, rel, writing, 1, 1, err);
    if (d == NULL)
        return -1;
    if (!writing) {
        int rc = store_payload_size(d->s, rel, size, err);
        if (rc != 0) {
            dbio_release(d, 0);
            return rc;
        }
    }
    *io = dbio_io(d);
    return 0;
}

