/*
 * intake.c - batches of new messages, made durable together (M2).
 *
 * Owns the payloads of a batch until they are committed: on any failure
 * before the commit they are removed, so a failed intake leaves nothing
 * half-stored; after a failed commit only those whose message the store
 * says it does not have (a commit can fail after it happened). Payloads
 * are named payloads/YYYYMMDD/<id>.wpay: files under payload_dir, or rows
 * of the database (payload_dir = database, core/payloads.h).
 *
 * The order that makes acknowledgement safe: payload bytes written ->
 * payload files synced (one batched sync) -> payload folder fsynced (rows:
 * each payload's rows committed by payload_finish without waiting for
 * their WAL flush: the messages' commit below waits for a flush that
 * covers them, WAL being one ordered stream) -> messages committed (one
 * transaction) -> caller acknowledges the source. A node killed
 * between a payload's rows and its message leaves rows no message names:
 * the purge sweeps them (wharf_payloads_sweep).
 */
#include "core/intake.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/env.h"
#include "core/jobs.h"
#include "core/metrics.h"
#include "core/payloads.h"
#include "core/progress.h"
#include "core/wharf.h"
#include "store/job_store.h"
#include "store/partner_store.h"
#include "store/store.h"
#include "util/fsx.h"
#include "util/id.h"
#include "util/log.h"
#include "vault/vault.h"

struct intake_item {
    char id[ID_LEN + 1];
    char *filename;
    char *source_key;
    char rel[96];               /* payloads/YYYYMMDD/<id>.wpay */
    int fd;                     /* open until the batch is synced */
    struct payload_info info;
    char dedup[65];
    int committed;
    int counted;                /* its commit was counted in the metrics */
    char duplicate_of[ID_LEN + 1];
};

struct intake {
    struct wharf *w;
    struct store *st;
    const char *source;
    const char *const *next;
    size_t nnext;
    struct intake_item *items;
    size_t n, cap;
    struct payload_writer *cur;     /* message being streamed, or NULL */
    char day[16];                   /* folder known to exist */
    /* intake_keep: what the one message's commit keeps with it */
    int keep;
    struct store_receipt kept_row;  /* kept_row.message_id NULL: none */
    const struct conn_job_ready *job;
    struct store_job_new job_row;
    const char *why;
};

struct intake *intake_new(struct wharf *w, struct store *st, const char *source,
                          const char *const *next, size_t nnext)
{
    struct intake *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return NULL;
    in->w = w;
    in->st = st;
    in->source = source;
    in->next = next;
    in->nnext = nnext;
    return in;
}

/* Remove the stored payload rel of a message that will not be kept. */
static void payload_drop(struct wharf *w, const char *rel)
{
    char path[4300];
    struct error e = {0};
    if (w->payloads_in_db)
        (void)wharf_payload_destroy(w, rel, &e);    /* else the sweep's */
    else if (wharf_path(w, rel, path, sizeof(path)) == 0)
        unlink(path);
}

static void item_clear(struct intake_item *it, int remove_file, struct wharf *w)
{
    if (it->fd >= 0)
        close(it->fd);
    it->fd = -1;
    if (remove_file && it->rel[0])
        payload_drop(w, it->rel);
    free(it->filename);
    free(it->source_key);
    memset(it, 0, sizeof(*it));
    it->fd = -1;
}

/* The day folder this process last made durable (its entry fsynced in
 * payload_dir), for every intake of the process: an AS2 or HTTP request
 * has an intake of its own, and syncing payload_dir again for each of
 * them was one fsync per message. A folder that mkdir makes anew (someone
 * removed it) is synced again. */
static struct {
    pthread_mutex_t mu;
    char path[4300];
} durable_day = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int day_durable(const char *path)
{
    pthread_mutex_lock(&durable_day.mu);
    int known = strcmp(durable_day.path, path) == 0;
    pthread_mutex_unlock(&durable_day.mu);
    return known;
}

static void day_made_durable(const char *path)
{
    pthread_mutex_lock(&durable_day.mu);
    snprintf(durable_day.path, sizeof(durable_day.path), "%s", path);
    pthread_mutex_unlock(&durable_day.mu);
}

/* The payload folder for today, created when first needed. */
static int day_folder(struct intake *in, char day[16], size_t n, struct error *err)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, n, "%Y%m%d", &tm);
    if (strcmp(day, in->day) == 0 || in->w->payloads_in_db)
        return 0;           /* (rows need no folder) */
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s", in->w->payload_dir, day);
    int made = mkdir(path, 0700) == 0;
    if (!made && errno != EEXIST)
        return error_errno(err, errno, "cannot create %s", path);
    if (made || !day_durable(path)) {
        if (fsx_fsync_dir(in->w->payload_dir, err) < 0)
            return -1;
        day_made_durable(path);
    }
    snprintf(in->day, sizeof(in->day), "%s", day);
    return 0;
}

int intake_begin(struct intake *in, const char *filename,
                 const char *source_key, struct error *err)
{
    if (in->cur != NULL)
        return error_set(err, "intake: previous message not ended");
    if (in->nnext == 0)
        return error_set(err, "connector %s has no outgoing link: nothing "
                         "would deliver the message (add a link with `wharf "
                         "flow import`, then send it again)", in->source);
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 64;
        void *p = realloc(in->items, cap * sizeof(*in->items));
        if (p == NULL)
            return error_set(err, "out of memory");
        in->items = p;
        in->cap = cap;
    }
    struct intake_item *it = &in->items[in->n];
    memset(it, 0, sizeof(*it));
    it->fd = -1;
    id_new(it->id);
    char day[16];
    if (day_folder(in, day, sizeof(day), err) < 0)
        return -1;
    snprintf(it->rel, sizeof(it->rel), "payloads/%s/%s.wpay", day, it->id);
    it->filename = filename ? strdup(filename) : NULL;
    it->source_key = source_key ? strdup(source_key) : NULL;
    in->cur = wharf_payload_create(in->w, it->rel, it->id, err);
    if (in->cur == NULL) {
        it->rel[0] = '\0';
        item_clear(it, 0, in->w);
        return -1;
    }
    progress_begin(it->id, in->source, "receive", -1);
    return 0;
}

void intake_keep(struct intake *in, const struct conn_receipt *kept,
                 const struct conn_job_ready *job, const char *why)
{
    memset(&in->kept_row, 0, sizeof(in->kept_row));
    if (kept != NULL)
        conn_receipt_row(kept, &in->kept_row);
    in->job = job;
    if (job != NULL)
        conn_job_ready_row(job, &in->job_row);
    in->why = why;
    in->keep = 1;
}

/* What intake_keep gave is the caller's again once the commit ended. */
static void keep_end(struct intake *in, int committed)
{
    if (committed && in->job != NULL && in->n == 1 &&
        !in->items[0].duplicate_of[0])
        conn_job_ready_added(in->job);
    in->keep = 0;
    in->job = NULL;
    in->why = NULL;
    memset(&in->kept_row, 0, sizeof(in->kept_row));
}

int intake_set_filename(struct intake *in, const char *filename,
                        struct error *err)
{
    if (in->cur == NULL)
        return error_set(err, "intake: no message is being streamed");
    struct intake_item *it = &in->items[in->n];
    char *copy = filename ? strdup(filename) : NULL;
    if (filename && copy == NULL)
        return error_set(err, "out of memory");
    free(it->filename);
    it->filename = copy;
    return 0;
}

int intake_write(struct intake *in, const void *buf, size_t n,
                 struct error *err)
{
    if (in->cur == NULL)
        return error_set(err, "intake: no message begun");
    progress_add((int64_t)n);
    return payload_write(in->cur, buf, n, err);
}

void intake_cancel(struct intake *in)
{
    if (in->cur == NULL)
        return;
    progress_end();
    payload_abort(in->cur);
    in->cur = NULL;
    in->items[in->n].rel[0] = '\0';     /* payload_abort removed it */
    item_clear(&in->items[in->n], 0, in->w);
}

/* hex(SHA-256(source_key "\n" content sha256)) */
static void dedup_key(const char *source_key, const char *sha, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, source_key, strlen(source_key));
    EVP_DigestUpdate(ctx, "\n", 1);
    EVP_DigestUpdate(ctx, sha, strlen(sha));
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int intake_end(struct intake *in, struct error *err)
{
    if (in->cur == NULL)
        return error_set(err, "intake: no message begun");
    struct intake_item *it = &in->items[in->n];
    progress_end();
    int rc = payload_finish(in->cur, &it->info, &it->fd, err);
    in->cur = NULL;
    if (rc < 0) {
        it->rel[0] = '\0';              /* payload_finish removed it */
        item_clear(it, 0, in->w);
        return -1;
    }
    if (it->source_key)
        dedup_key(it->source_key, it->info.sha256, it->dedup);
    in->n++;
    return 0;
}

int intake_add_fd(struct intake *in, int fd, const char *filename,
                  const char *source_key, struct error *err)
{
    /* On the heap, not in static TLS: a 64 KiB __thread buffer is paid by
     * every thread of the process and breaks CivetWeb's small stacks. */
    unsigned char *buf = malloc(PAYLOAD_SEGMENT);
    if (buf == NULL)
        return error_set(err, "out of memory");
    if (intake_begin(in, filename, source_key, err) < 0) {
        free(buf);
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        progress_set(-1, (int64_t)sb.st_size);     /* a file: its size */
    for (;;) {
        ssize_t r = read(fd, buf, PAYLOAD_SEGMENT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            error_errno(err, errno, "cannot read %s", filename ? filename : "input");
            intake_cancel(in);
            free(buf);
            return -1;
        }
        if (r == 0)
            break;
        if (intake_write(in, buf, (size_t)r, err) < 0) {
            intake_cancel(in);
            free(buf);
            return -1;
        }
    }
    free(buf);
    return intake_end(in, err);
}

static int sync_batch(struct intake *in, struct error *err)
{
    int *fds = calloc(in->n + 1, sizeof(int));
    if (fds == NULL)
        return error_set(err, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < in->n; i++)
        if (in->items[i].fd >= 0 && !in->items[i].committed)
            fds[k++] = in->items[i].fd;
    int rc = fsx_sync_fds(fds, k, err);
    free(fds);
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s", in->w->payload_dir, in->day);
    if (rc == 0 && in->day[0])
        rc = fsx_fsync_dir(path, err);
    return rc;
}

static int store_batch(struct intake *in, struct error *err)
{
    struct store_message *msgs = calloc(in->n + 1, sizeof(*msgs));
    struct store_new *news = calloc(in->n + 1, sizeof(*news));
    int rc = -1;
    if (msgs == NULL || news == NULL) {
        error_set(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < in->n; i++) {
        struct intake_item *it = &in->items[i];
        struct store_message *m = &msgs[i];
        memcpy(m->id, it->id, sizeof(m->id));
        m->created_at = time_now_ms();
        m->source = (char *)in->source;
        m->filename = it->filename;
        m->size = (int64_t)it->info.size;
        m->sha256 = it->info.sha256;
        m->payload_path = it->rel;
        m->dedup_key = it->source_key ? it->dedup : NULL;
        news[i].msg = m;
        news[i].next = in->next;
        news[i].nnext = in->nnext;
    }
    if (in->keep && in->n == 1) {
        news[0].kept = in->kept_row.message_id ? &in->kept_row : NULL;
        news[0].job = in->job ? &in->job_row : NULL;
        news[0].why = in->why;
    }
    rc = store_intake(in->st, news, in->n, err);
    for (size_t i = 0; rc == 0 && i < in->n; i++) {
        in->items[i].committed = 1;
        if (news[i].duplicate)
            memcpy(in->items[i].duplicate_of, news[i].existing_id, ID_LEN + 1);
    }
out:
    free(msgs);         /* the strings belong to the items */
    free(news);
    return rc;
}

/* After a failed commit: 0 when the store says item i's message is not
 * there, 1 when it is or the store cannot say. A commit can fail after
 * it happened (PostgreSQL's connection lost before COMMIT's answer, a
 * failover): its payload must stay, or the message stored, and taken as a
 * duplicate when the source sends it again, has none. A payload kept for
 * nothing is named in the log. */
static int stored_maybe(struct intake *in, size_t i)
{
    struct intake_item *it = &in->items[i];
    struct store_message m;
    struct error e = {0};
    int found = store_message_get(in->st, it->id, &m, &e);
    if (found == 0)
        store_message_clear(&m);
    if (found == 1)
        return 0;
    if (found < 0 && it->rel[0])
        log_warn("intake: kept %s: the commit failed and the store cannot "
                 "say whether message %s is stored (%s)", it->rel, it->id,
                 e.msg);
    return 1;
}

int intake_commit(struct intake *in, struct error *err)
{
    if (in->cur != NULL)
        return error_set(err, "intake: a message is still being streamed");
    if (in->n == 0)
        return 0;
    int synced = sync_batch(in, err) == 0;
    if (!synced || store_batch(in, err) < 0) {
        keep_end(in, 0);
        for (size_t i = 0; i < in->n; i++)
            item_clear(&in->items[i], !synced || !stored_maybe(in, i),
                       in->w);
        in->n = 0;
        return -1;
    }
    keep_end(in, 1);
    for (size_t i = 0; i < in->n; i++) {
        struct intake_item *it = &in->items[i];
        int fresh = !it->counted;       /* committed by this call */
        it->counted = 1;
        if (it->fd >= 0)
            close(it->fd);
        it->fd = -1;
        if (it->duplicate_of[0]) {      /* not stored: drop our copy */
            payload_drop(in->w, it->rel);
        } else if (fresh) {
            metrics_received(in->source, (int64_t)it->info.size);
        }
    }
    return 0;
}

size_t intake_count(const struct intake *in)
{
    return in->n;
}

const char *intake_id(const struct intake *in, size_t i)
{
    return i < in->n ? in->items[i].id : NULL;
}

const char *intake_filename(const struct intake *in, size_t i)
{
    return i < in->n ? in->items[i].filename : NULL;
}

const char *intake_duplicate(const struct intake *in, size_t i)
{
    return (i < in->n && in->items[i].duplicate_of[0])
               ? in->items[i].duplicate_of : NULL;
}

void intake_reset(struct intake *in)
{
    for (size_t i = 0; i < in->n; i++)
        item_clear(&in->items[i], !in->items[i].committed, in->w);
    in->n = 0;
}

void intake_free(struct intake *in)
{
    if (in == NULL)
        return;
    intake_cancel(in);
    intake_reset(in);
    free(in->items);
    free(in);
}

int intake_release(struct intake *in, const char *id, const char *why,
                   const struct conn_receipt *kept,
                   const struct conn_job_ready *job, struct error *err)
{
    struct store_receipt row;
    struct store_job_new jrow;
    if (kept != NULL)
        conn_receipt_row(kept, &row);
    if (job != NULL)
        conn_job_ready_row(job, &jrow);
    int rc = store_message_release(in->st, id, why, kept ? &row : NULL,
                                   job ? &jrow : NULL, err);
    if (rc == 0 && job != NULL)
        conn_job_ready_added(job);
    return rc;
}

int intake_refused(struct intake *in, const struct intake_refusal *r,
                   char id[ID_LEN + 1], int64_t *count, struct error *err)
{
    struct store_refusal rec = { .source = in->source,
        .address = r->address, .reason = r->reason, .text = r->text,
        .window_ms = r->window_ms };
    return store_refusal_record(in->st, &rec, id, count, err);
}
