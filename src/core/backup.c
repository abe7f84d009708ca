/*
 * backup.c - taking an online backup of a data directory (R20, `wharf
 * backup`): the database snapshot, the payload files it references,
 * wharf.conf, the audit head anchor and the TLS files, into one container
 * (backup_format.c) sealed for the master key or a backup certificate.
 *
 * Order, so the backup is one consistent point in time: the audit head
 * anchor is read first (an anchor never leads the trail, so it names an
 * entry the later snapshot holds); then the database snapshot (one read
 * transaction: every message committed, i.e. acknowledged, before it is
 * in it); then the payload files that snapshot references (immutable once
 * committed; one purged or erased meanwhile is recorded as missing).
 *
 * A PostgreSQL store (R21) gives the same container: its snapshot is a
 * logical export of one REPEATABLE READ transaction into a SQLite file of
 * the current schema (store/pg_export.c), so `wharf.db` is a SQLite
 * database either way and verify and restore read both alike; the header's
 * "store" says "postgresql". The payloads come from the shared
 * payload_dir, or from the database (payload_dir = database: each read in
 * one snapshot of its rows, core/payloads.h); either way an entry holds
 * the payload's sealed bytes as a file would. Such a store's anchors are per node and may
 * lag the snapshot (decision 0007), so the anchor entry is made from the
 * snapshot: its newest audit entry, signed now (bk_anchor_snapshot).
 * The
 * keystore lock is held shared for the whole run (wharf_open), so `wharf
 * key rotate` cannot rewrite payload headers meanwhile.
 *
 * It owns the run's temp files: the database copy DIR/.backup-PID-ID.db
 * (0600, in the data dir because it holds what wharf.db holds) and the
 * output temp file TARGET.tmp-PID-XXXXXX beside the target, linked into
 * place only when complete and synced; both are removed at the end, and
 * those of a killed run (its pid gone) by the next run. Test hook:
 * fault_point("backup.entry") before each entry (kill -9 mid-backup). It must never write to the live database (the
 * record of the run is the CLI's), never copy a file outside the data
 * dir, and never put a secret in the header (it is plaintext).
 */
#include "core/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "audit/audit.h"
#include "core/payloads.h"
#include "core/wharf.h"
#include "store/backup_store.h"
#include "util/fault.h"
#include "util/fsx.h"
#include "util/secret.h"
#include "vault/vault.h"
#include "vault/vault_backup.h"

#define BK_CHUNK (256 * 1024)
#define BK_ANCHOR_MAX 4096
#define BK_COPY_PREFIX ".backup-"

struct bk_run {
    struct wharf *w;
    const struct backup_opts *o;
    struct backup_result *r;
    struct backup_writer *wr;
    int fd;                     /* the output temp file */
    char tmp[PATH_MAX];         /* its path */
    char copy[PATH_MAX];        /* the database copy */
    unsigned char *buf;         /* BK_CHUNK */
    struct store_backup_counts counts;  /* of the snapshot */
};

/* ---- temp files ---------------------------------------------------------- */

/* Remove database copies left by runs whose process is gone. */
static void bk_sweep_stale(struct wharf *w)
{
    DIR *d = opendir(w->dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        size_t n = strlen(BK_COPY_PREFIX);
        if (strncmp(e->d_name, BK_COPY_PREFIX, n) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + n, &end, 10);
        if (pid <= 0 || *end != '-' || pid == (long)getpid() ||
            (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        char path[PATH_MAX];
        if (wharf_path(w, e->d_name, path, sizeof(path)) == 0)
            unlink(path);
    }
    if (d != NULL)
        closedir(d);
}

/* 1 when a directory entry is a backup temp file "<name>.tmp-PID-XXXXXX"
 * of a process that is gone, holding a backup's start (or nothing). */
static int bk_stale_output(int dfd, const char *name)
{
    const char *t = strstr(name, ".tmp-");
    char *end;
    if (t == NULL || t == name)
        return 0;
    long pid = strtol(t + 5, &end, 10);
    if (pid <= 0 || *end != '-' || strlen(end + 1) != 6 ||
        pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        return 0;
    char magic[8];
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t k = read(fd, magic, sizeof(magic));
    close(fd);
    return k == 0 || (k == 8 && memcmp(magic, BACKUP_MAGIC, 8) == 0);
}

/* Remove what killed runs left beside the target. */
static void bk_sweep_outputs(const char *folder)
{
    DIR *d = opendir(folder);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (bk_stale_output(dirfd(d), e->d_name))
            unlinkat(dirfd(d), e->d_name, 0);
    if (d != NULL)
        closedir(d);
}

/* The absolute target path into r->path and a temp file beside it. */
static int bk_output_open(struct bk_run *b, struct error *err)
{
    char dir[PATH_MAX], real[PATH_MAX];
    const char *to = b->o->to, *slash = strrchr(to, '/');
    struct stat sb;
    if (fsx_dirname(to, dir, sizeof(dir)) != 0 || realpath(dir, real) == NULL)
        return error_errno(err, errno, "cannot write the backup to %s: its "
                           "folder", to);
    const char *base = slash ? slash + 1 : to;
    if (base[0] == '\0')
        return error_set(err, "--to %s names a folder, not a file", to);
    int n = snprintf(b->r->path, sizeof(b->r->path), "%s/%s", real, base);
    if (n < 0 || (size_t)n >= sizeof(b->r->path) ||
        (size_t)snprintf(b->tmp, sizeof(b->tmp), "%s.tmp-%d-XXXXXX",
                         b->r->path, (int)getpid()) >= sizeof(b->tmp))
        return error_set(err, "backup path %s is too long", to);
    bk_sweep_outputs(real);
    if (lstat(b->r->path, &sb) == 0)
        return error_set(err, "%s already exists: a backup never "
                         "overwrites a file (choose another name)",
                         b->r->path);
    b->fd = mkostemp(b->tmp, O_CLOEXEC);
    if (b->fd < 0) {
        b->tmp[0] = '\0';
        return error_errno(err, errno, "cannot create a temp file beside "
                           "%s", b->r->path);
    }
    if (fchmod(b->fd, 0600) != 0)
        return error_errno(err, errno, "cannot chmod %s", b->tmp);
    return 0;
}

/* Sync the temp file, link it to its name, drop the temp name, sync the
 * folder. */
static int bk_output_commit(struct bk_run *b, struct error *err)
{
    char dir[PATH_MAX];
    if (fsync(b->fd) != 0)
        return error_errno(err, errno, "cannot sync %s", b->tmp);
    if (close(b->fd) != 0) {
        b->fd = -1;
        return error_errno(err, errno, "cannot write %s", b->tmp);
    }
    b->fd = -1;
    if (link(b->tmp, b->r->path) != 0)
        return error_errno(err, errno, "cannot put the backup in place at "
                           "%s", b->r->path);
    unlink(b->tmp);
    b->tmp[0] = '\0';
    if (fsx_dirname(b->r->path, dir, sizeof(dir)) != 0)
        return error_set(err, "backup path %s is too long", b->r->path);
    return fsx_fsync_dir(dir, err);
}

/* ---- entries --------------------------------------------------------------- */

/* Copy exactly size bytes that io reads into the current entry. */
static int bk_stream_io(struct bk_run *b, const struct payload_io *io,
                        uint64_t size, const char *name, struct error *err)
{
    uint64_t left = size;
    while (left > 0) {
        size_t want = left < BK_CHUNK ? (size_t)left : BK_CHUNK;
        ssize_t k = io->read(io->ctx, b->buf, want, err);
        if (k < 0)
            return -1;
        if (k == 0)
            return error_set(err, "%s shrank while it was copied", name);
        if (backup_writer_data(b->wr, b->buf, (size_t)k, err) != 0)
            return -1;
        left -= (uint64_t)k;
    }
    return 0;
}

struct bk_fd {
    int fd;
    const char *name;
};

static ssize_t bk_fd_read(void *ctx, void *p, size_t n, struct error *err)
{
    const struct bk_fd *f = ctx;
    ssize_t k;
    do
        k = read(f->fd, p, n);
    while (k < 0 && errno == EINTR);
    return k < 0 ? error_errno(err, errno, "cannot read %s", f->name) : k;
}

/* Copy exactly size bytes of fd into the current entry. */
static int bk_stream(struct bk_run *b, int fd, uint64_t size,
                     const char *name, struct error *err)
{
    struct bk_fd f = { fd, name };
    struct payload_io io = { .read = bk_fd_read, .ctx = &f };
    return bk_stream_io(b, &io, size, name, err);
}

/* The file at path as entry name. ENOENT is returned as 1 when
 * missing_ok (the caller records it), an error otherwise. */
static int bk_put_file(struct bk_run *b, const char *name, const char *path,
                       int missing_ok, struct error *err)
{
    struct stat sb;
    fault_point("backup.entry");            /* test hook: util/fault.h */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT && missing_ok)
        return 1;
    if (fd < 0)
        return error_errno(err, errno, "cannot open %s", path);
    int rc = fstat(fd, &sb) == 0 ? 0 : error_errno(err, errno, "cannot "
                                                   "stat %s", path);
    if (rc == 0 && !S_ISREG(sb.st_mode))
        rc = error_set(err, "%s is not a regular file", path);
    if (rc == 0)
        rc = backup_writer_begin(b->wr, BACKUP_ENTRY_FILE, name,
                                 (uint64_t)sb.st_size, err);
    if (rc == 0)
        rc = bk_stream(b, fd, (uint64_t)sb.st_size, path, err);
    if (rc == 0)
        rc = backup_writer_end(b->wr, err);
    close(fd);
    return rc;
}

static int bk_put_mem(struct bk_run *b, const char *name, const void *p,
                      size_t n, struct error *err)
{
    if (backup_writer_begin(b->wr, BACKUP_ENTRY_FILE, name, n, err) != 0 ||
        backup_writer_data(b->wr, p, n, err) != 0)
        return -1;
    return backup_writer_end(b->wr, err);
}

/* A file wharf.conf names (listener certificate, key, client CAs): in the
 * backup when it is inside the data dir; counted as outside otherwise. */
static int bk_put_conf_file(struct bk_run *b, const char *rel,
                            struct error *err)
{
    char path[PATH_MAX];
    if (rel[0] == '\0')
        return 0;
    if (rel[0] == '/') {
        b->r->outside++;
        return 0;
    }
    if (!backup_name_ok(rel))
        return error_set(err, "wharf.conf names %s, which a backup cannot "
                         "hold (use a plain relative path)", rel);
    if (wharf_path(b->w, rel, path, sizeof(path)) != 0)
        return error_set(err, "path %s is too long", rel);
    int rc = bk_put_file(b, rel, path, 1, err);
    return rc < 0 ? -1 : 0;
}

/* One payload of the snapshot (store_backup_payloads callback). */
static int bk_put_payload(void *ctx, const char *msgid, const char *rel,
                          struct error *err)
{
    struct bk_run *b = ctx;
    struct payload_io io;
    uint64_t size = 0;
    if (strncmp(rel, "payloads/", 9) != 0 || !backup_name_ok(rel))
        return error_set(err, "message %s names payload %s, outside "
                         "payloads/: the backup stops", msgid, rel);
    fault_point("backup.entry");            /* test hook: util/fault.h */
    int rc = wharf_payload_raw(b->w, rel, 0, &io, &size, err);
    if (rc == 0) {
        rc = backup_writer_begin(b->wr, BACKUP_ENTRY_FILE, rel, size, err);
        if (rc == 0)
            rc = bk_stream_io(b, &io, size, rel, err);
        if (rc == 0)
            rc = backup_writer_end(b->wr, err);
        io.release(io.ctx, 0);
    }
    if (rc != 1)
        return rc;
    b->r->missing++;        /* purged or erased since the snapshot */
    if (backup_writer_begin(b->wr, BACKUP_ENTRY_MISSING, rel, 0, err) != 0)
        return -1;
    return backup_writer_end(b->wr, err);
}

/* ---- the run ----------------------------------------------------------------- */

/* The content key's block: sealed by the vault, or for the certificate. */
static int bk_keyblock(struct bk_run *b, const struct secret *ckey,
                       unsigned char **kb, size_t *klen, struct error *err)
{
    struct backup_info *i = &b->r->info;
    if (b->o->recipient == NULL) {
        char context[64];
        i->recipient = BACKUP_TO_MASTER_KEY;
        snprintf(i->master_key_id, sizeof(i->master_key_id), "%s",
                 vault_active_id(b->w->vault));
        snprintf(context, sizeof(context), "backup:%s", i->backup_id);
        return vault_seal(b->w->vault, context, ckey, kb, klen, err);
    }
    i->recipient = BACKUP_TO_PUBLIC_KEY;
    i->has_keystore = 1;
    return vault_backup_wrap(b->w->vault, b->o->recipient, ckey, kb, klen,
                             i->spki_sha256, i->subject, sizeof(i->subject),
                             err);
}

/* The snapshot, then the header. */
static int bk_begin(struct bk_run *b, const struct secret *ckey,
                    struct error *err)
{
    struct backup_info *i = &b->r->info;
    struct store_backup_counts *c = &b->counts;
    unsigned char *kb = NULL;
    size_t klen = 0;
    if ((size_t)snprintf(b->copy, sizeof(b->copy), "%s/" BK_COPY_PREFIX
                         "%d-%s.db", b->w->dir, (int)getpid(),
                         i->backup_id) >= sizeof(b->copy))
        return error_set(err, "data directory path is too long");
    if (store_backup_copy(b->w->db_path, b->copy, c, err) != 0) {
        b->copy[0] = '\0';
        return -1;
    }
    i->messages = c->messages;
    i->payloads = c->payloads;
    i->schema_version = c->schema_version;
    if (bk_keyblock(b, ckey, &kb, &klen, err) != 0)
        return -1;
    b->wr = backup_writer_open(b->fd, i, kb, klen, secret_data(ckey), err);
    free(kb);
    return b->wr != NULL ? 0 : -1;
}

/* Every entry, then the signed trailer. */
static int bk_entries(struct bk_run *b, const char *anchor, size_t alen,
                      struct error *err)
{
    const struct wharf_conf *c = &b->w->conf;
    if (bk_put_file(b, "wharf.db", b->copy, 0, err) != 0 ||
        bk_put_file(b, "wharf.conf", b->w->conf_path, 0, err) != 0)
        return -1;
    if (anchor != NULL && bk_put_mem(b, AUDIT_HEAD_FILE, anchor, alen, err))
        return -1;
    if (bk_put_conf_file(b, c->tls_cert, err) != 0 ||
        bk_put_conf_file(b, c->tls_key, err) != 0 ||
        bk_put_conf_file(b, c->admin_client_ca, err) != 0 ||
        bk_put_conf_file(b, c->partner_client_ca, err) != 0)
        return -1;
    if (store_backup_payloads(b->copy, bk_put_payload, b, err) != 0)
        return -1;
    unsigned char m[32], sig[VAULT_SIG_LEN];
    char text[160], key_id[VAULT_KEY_ID_LEN + 1];
    backup_writer_manifest(b->wr, m);
    size_t n = backup_signed_text(m, text, sizeof(text));
    if (n == 0 || vault_audit_sign(b->w->vault, text, n, sig, key_id,
                                   err) != 0)
        return -1;
    return backup_writer_finish(b->wr, key_id, sig, err);
}

/* The anchor file's bytes (NULL when there is none yet): DIR/state/,
 * or DIR/ in a data dir made before state/ that no audited action moved. */
static int bk_anchor_read(struct wharf *w, char **out, size_t *n,
                          struct error *err)
{
    char path[PATH_MAX];
    *out = NULL;
    *n = 0;
    struct stat sb;
    if (wharf_path(w, AUDIT_HEAD_FILE, path, sizeof(path)) != 0)
        return error_set(err, "data directory path is too long");
    if (lstat(path, &sb) != 0 && errno == ENOENT &&
        wharf_path(w, AUDIT_HEAD_OLD, path, sizeof(path)) == 0 &&
        lstat(path, &sb) != 0 && errno == ENOENT)
        return 0;
    return fsx_read_all(path, BK_ANCHOR_MAX, out, n, err);
}

/* A PostgreSQL store's anchors are per node and may lag the snapshot
 * (decision 0007): the backup's anchor names the snapshot's own newest entry, signed now with the audit
 * key (NULL when the trail is empty). It cannot lead the snapshot, and
 * the restored SQLite data dir's `audit verify` then catches a cut of the
 * restored trail as it would on the source node. */
static int bk_anchor_snapshot(struct bk_run *b, char **out, size_t *n,
                              struct error *err)
{
    *out = NULL;
    *n = 0;
    if (b->counts.audit_seq <= 0)
        return 0;
    *out = malloc(BK_ANCHOR_MAX);
    if (*out == NULL)
        return error_set(err, "out of memory");
    return audit_anchor_sign(b->w->vault, b->counts.audit_seq,
                             b->counts.audit_hash, *out, BK_ANCHOR_MAX, n,
                             err);
}

static void bk_info_init(struct backup_info *i)
{
    memset(i, 0, sizeof(*i));
    id_new(i->backup_id);
    i->created_ms = time_now_ms();
    if (gethostname(i->node, sizeof(i->node) - 1) != 0)
        snprintf(i->node, sizeof(i->node), "unknown");
    for (char *p = i->node; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    snprintf(i->wharf_version, sizeof(i->wharf_version), "%s",
             WHARF_VERSION);
    snprintf(i->store, sizeof(i->store), "sqlite");
}

static int bk_run(struct bk_run *b, struct error *err)
{
    char *anchor = NULL;
    size_t alen = 0;
    struct secret *ckey = secret_new(BACKUP_KEY_LEN);
    int rc = ckey != NULL ? 0 : error_set(err, "out of memory");
    if (rc == 0 && RAND_bytes(secret_data_mut(ckey), BACKUP_KEY_LEN) != 1)
        rc = error_openssl(err, "cannot make a content key");
    if (rc == 0)
        rc = bk_output_open(b, err);
    if (rc == 0 && !wharf_store_shared(b->w))  /* before the snapshot */
        rc = bk_anchor_read(b->w, &anchor, &alen, err);
    if (rc == 0)
        rc = bk_begin(b, ckey, err);
    secret_free(ckey);
    if (rc == 0 && wharf_store_shared(b->w))   /* from the snapshot */
        rc = bk_anchor_snapshot(b, &anchor, &alen, err);
    if (rc == 0)
        rc = bk_entries(b, anchor, alen, err);
    free(anchor);
    if (rc == 0) {
        b->r->bytes = backup_writer_bytes(b->wr);
        backup_writer_sha256(b->wr, b->r->sha256);
        rc = bk_output_commit(b, err);
    }
    return rc;
}

int backup_create(struct wharf *w, const struct backup_opts *o,
                  struct backup_result *r, struct error *err)
{
    struct bk_run b = { .w = w, .o = o, .r = r, .fd = -1 };
    memset(r, 0, sizeof(*r));
    bk_info_init(&r->info);
    r->started_at = r->info.created_ms;
    if (o->to == NULL || o->to[0] == '\0')
        return error_set(err, "give the backup file: --to FILE");
    if (wharf_store_shared(w))
        snprintf(r->info.store, sizeof(r->info.store), "postgresql");
    bk_sweep_stale(w);
    b.buf = malloc(BK_CHUNK);
    int rc = b.buf != NULL ? bk_run(&b, err) : error_set(err, "out of "
                                                         "memory");
    if (rc != 0 && b.r->bytes == 0 && b.wr != NULL)
        b.r->bytes = backup_writer_bytes(b.wr);
    backup_writer_free(b.wr);
    free(b.buf);
    if (b.fd >= 0)
        close(b.fd);
    if (b.tmp[0] != '\0')
        unlink(b.tmp);
    if (b.copy[0] != '\0')
        unlink(b.copy);
    r->finished_at = time_now_ms();
    return rc;
}
