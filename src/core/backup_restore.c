/*
 * backup_restore.c - `wharf backup verify` and `wharf restore` (R20):
 * open a backup's key block with the keystore or private key given, read
 * the container end to end, check every entry, the manifest and the
 * signature, and (restore) rebuild a data dir from it.
 *
 * Restore writes only under its target directory, which must be absent or
 * empty, and only names that backup_name_ok allows and rs_name_allowed
 * keeps to the data dir's layout (no keystore, lock or log names). The
 * keystore is written last, after every segment, entry, payload header
 * and the signature checked and everything else was synced (wharf.conf
 * pointed at the restored store first: wharf_conf_set_store): a data dir
 * without a keystore cannot be served, so an interrupted restore never
 * looks like a working one. On a failure before that point everything it
 * wrote is removed (and the directory, if it made it).
 *
 * A backup of either backend holds a SQLite wharf.db (core/backup.c), so
 * a restore always rebuilds and checks a SQLite data dir first; with
 * --store URL it then loads those checked rows into an empty PostgreSQL
 * database (store_backup_load: one transaction; a database that holds
 * Wharf rows is refused before anything is written), points wharf.conf at
 * it, removes wharf.db and verifies the trail again on the database,
 * with the backup's anchor, now the node's (a node of a PostgreSQL store
 * keeps its anchor in its data dir: decision 0007).
 * Payloads go to --payload-dir when given (absent or empty, like DIR);
 * with --payload-dir database (PostgreSQL only) they are restored into
 * DIR/payloads first, checked like any, then moved into the database's
 * rows once it holds the rest (rs_payloads_to_db), each file removed once
 * its rows are committed.
 *
 * Test hook: fault_point("restore.entry") after each file written (kill
 * -9 mid-restore).
 *
 * It owns the run's vault, reader and fds. It must never write outside
 * the target directory, never leave a keystore beside unverified data,
 * and never print key material (errors name files, ids and hashes).
 */
#include "core/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/dbpass.h"
#include "core/payloads.h"
#include "core/wharf.h"
#include "store/backup_store.h"
#include "store/store.h"
#include "util/fault.h"
#include "util/fsx.h"
#include "util/secret.h"
#include "vault/vault.h"
#include "vault/vault_backup.h"

#define RS_CHUNK (256 * 1024)

struct rs_run {
    const struct backup_keys *k;
    struct backup_report *rep;
    struct backup_reader *rd;
    struct vault *v;
    int fd;                     /* the backup file */
    const char *dir;            /* restore: the target, else NULL */
    const char *payloads;       /* restore: the payload folder, or NULL:
                                   dir/payloads */
    int made, made_p;           /* restore made dir, the payload folder */
    unsigned char *buf;
    int have_db, have_conf;
};

/* ---- opening the key block --------------------------------------------- */

static int rs_vault_has(struct vault *v, const char *id)
{
    for (size_t i = 0; i < vault_key_count(v); i++)
        if (strcmp(vault_key_id(v, i), id) == 0)
            return 1;
    return 0;
}

static int rs_key_master(struct rs_run *s, const struct backup_info *i,
                         struct secret **ckey, struct error *err)
{
    char context[64];
    size_t klen;
    const unsigned char *kb = backup_reader_keyblock(s->rd, &klen);
    if (s->k->keystore == NULL)
        return error_set(err, "this backup is sealed with master key %s: "
                         "give --keystore FILE, a copy of the keystore that "
                         "holds it", i->master_key_id);
    s->v = vault_open(s->k->keystore, err);
    if (s->v == NULL)
        return -1;
    if (!rs_vault_has(s->v, i->master_key_id))
        return error_set(err, "this backup is sealed with master key %s, "
                         "which keystore %s does not hold (it is %s: "
                         "rotated since? use the keystore copy of the time "
                         "of the backup)", i->master_key_id, s->k->keystore,
                         vault_active_id(s->v));
    snprintf(context, sizeof(context), "backup:%s", i->backup_id);
    *ckey = vault_unseal(s->v, context, kb, klen, err);
    if (*ckey == NULL)
        error_prefix(err, "the backup's content key does not open (damaged "
                     "header?)");
    return *ckey != NULL ? 0 : -1;
}

static int rs_key_public(struct rs_run *s, const struct backup_info *i,
                         struct secret **ckey, struct error *err)
{
    size_t klen;
    const unsigned char *kb = backup_reader_keyblock(s->rd, &klen);
    if (s->k->key == NULL)
        return error_set(err, "this backup is for the backup key %s "
                         "(public key SHA-256 %s): give --key FILE, its "
                         "private key", i->subject, i->spki_sha256);
    if (!i->has_keystore)
        return error_set(err, "the backup header is damaged (a public-key "
                         "backup must carry the keystore)");
    return vault_backup_unwrap(s->k->key, i->spki_sha256, kb, klen, ckey,
                               &s->v, err);
}

static int rs_open(struct rs_run *s, const char *file, struct error *err)
{
    s->fd = open(file, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return error_errno(err, errno, "cannot open %s", file);
    s->rd = backup_reader_open(backup_read_fd, &s->fd, err);
    if (s->rd == NULL)
        return -1;
    const struct backup_info *i = backup_reader_info(s->rd);
    s->rep->info = *i;
    struct secret *ckey = NULL;
    int rc = i->recipient == BACKUP_TO_MASTER_KEY
             ? rs_key_master(s, i, &ckey, err)
             : rs_key_public(s, i, &ckey, err);
    if (rc == 0)
        backup_reader_key(s->rd, secret_data(ckey));
    secret_free(ckey);
    return rc;
}

/* ---- entries -------------------------------------------------------------- */

/* Names restore may write: the layout of a data dir, nothing that holds
 * keys or locks (the keystore comes from the key block or --keystore). */
static int rs_name_allowed(const char *name)
{
    static const char *const refused[] = {
        "wharf.lock", "wharf.db-wal", "wharf.db-shm", "wharf.db-journal",
        "audit.head.lock", "health.json", "logs", NULL,
    };
    size_t first = strcspn(name, "/");
    if (strncmp(name, "keystore", 8) == 0)
        return 0;
    /* state/ holds serve's run-time files beside the anchor: only the
     * anchor (AUDIT_HEAD_FILE) comes back */
    if (strncmp(name, "state/", 6) == 0)
        return strcmp(name, AUDIT_HEAD_FILE) == 0;
    for (size_t i = 0; refused[i] != NULL; i++)
        if (strlen(refused[i]) == first && !strncmp(name, refused[i], first))
            return 0;
    return 1;
}

/* The message id of a payload entry "payloads/YYYYMMDD/<id>.wpay" into
 * id; 0 when name is not one. */
static int rs_payload_id(const char *name, char id[ID_LEN + 1])
{
    size_t n = strlen(name);
    if (n != 9 + 8 + 1 + ID_LEN + 5 || strncmp(name, "payloads/", 9) != 0 ||
        name[17] != '/' || strcmp(name + n - 5, ".wpay") != 0)
        return 0;
    for (size_t i = 9; i < 17; i++)
        if (name[i] < '0' || name[i] > '9')
            return 0;
    memcpy(id, name + 18, ID_LEN);
    id[ID_LEN] = '\0';
    return id_valid(id);
}

/* Open the file a restore writes entry name into. */
static int rs_create(struct rs_run *s, const char *name, struct error *err)
{
    char path[PATH_MAX], parent[PATH_MAX];
    int k = s->payloads != NULL && strncmp(name, "payloads/", 9) == 0
            ? snprintf(path, sizeof(path), "%s/%s", s->payloads, name + 9)
            : snprintf(path, sizeof(path), "%s/%s", s->dir, name);
    if (k < 0 || (size_t)k >= sizeof(path))
        return error_set(err, "restore path too long for %s", name);
    if (fsx_dirname(path, parent, sizeof(parent)) != 0 ||
        fsx_mkdir_p(parent, 0700, err) != 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                  O_CLOEXEC, 0600);
    if (fd < 0)
        return error_errno(err, errno, "cannot create %s (the backup names "
                           "it twice?)", path);
    return fd;
}

static int rs_write_all(int fd, const unsigned char *p, size_t n,
                        const char *name, struct error *err)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return error_errno(err, errno, "cannot write %s", name);
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Read the entry's data (writing it to out when out >= 0), keeping its
 * first bytes in head. */
static int rs_copy(struct rs_run *s, const struct backup_entry *e, int out,
                   unsigned char *head, size_t *hlen, struct error *err)
{
    *hlen = 0;
    for (;;) {
        ssize_t k = backup_reader_data(s->rd, s->buf, RS_CHUNK, err);
        if (k <= 0)
            return (int)k;
        size_t want = VAULT_PAYLOAD_HEADER_LEN - *hlen;
        if (want > 0) {
            size_t take = (size_t)k < want ? (size_t)k : want;
            memcpy(head + *hlen, s->buf, take);
            *hlen += take;
        }
        if (out >= 0 && rs_write_all(out, s->buf, (size_t)k, e->name, err))
            return -1;
        s->rep->bytes += (uint64_t)k;
    }
}

/* A payload's header must open with the keystore; an all-zero header is
 * a payload erased (crypto-shredded) while the backup was taken. */
static int rs_payload_check(struct rs_run *s, const char *id,
                            const unsigned char *head, size_t hlen,
                            struct error *err)
{
    size_t zero = 0;
    while (zero < hlen && head[zero] == 0)
        zero++;
    if (hlen == VAULT_PAYLOAD_HEADER_LEN && zero == hlen) {
        s->rep->shredded++;
        return 0;
    }
    return payload_header_check(s->v, head, hlen, id, err);
}

static int rs_entry(struct rs_run *s, const struct backup_entry *e,
                    struct error *err)
{
    char id[ID_LEN + 1];
    unsigned char head[VAULT_PAYLOAD_HEADER_LEN];
    size_t hlen = 0;
    int payload = rs_payload_id(e->name, id);
    if (!rs_name_allowed(e->name) ||
        (strncmp(e->name, "payloads/", 9) == 0 && !payload))
        return error_set(err, "the backup holds an entry named %s, which "
                         "no data dir has: refused", e->name);
    s->rep->payloads += payload;
    if (e->kind == BACKUP_ENTRY_MISSING) {
        s->rep->missing++;
        return payload ? 0 : error_set(err, "the backup is damaged: %s "
                                       "marked missing", e->name);
    }
    s->rep->files++;
    s->have_db |= strcmp(e->name, "wharf.db") == 0;
    s->have_conf |= strcmp(e->name, "wharf.conf") == 0;
    int out = s->dir != NULL ? rs_create(s, e->name, err) : -1;
    if (s->dir != NULL && out < 0)
        return -1;
    int rc = rs_copy(s, e, out, head, &hlen, err);
    if (out >= 0 && close(out) != 0 && rc == 0)
        rc = error_errno(err, errno, "cannot write %s", e->name);
    if (out >= 0)
        fault_point("restore.entry");       /* test hook: util/fault.h */
    if (rc == 0 && payload)
        rc = rs_payload_check(s, id, head, hlen, err);
    return rc;
}

/* Every entry, then the trailer's counts and signature. */
static int rs_entries(struct rs_run *s, struct error *err)
{
    struct backup_entry e;
    int rc;
    while ((rc = backup_reader_next(s->rd, &e, err)) == 1) {
        s->rep->entries++;
        if (rs_entry(s, &e, err) != 0)
            return -1;
    }
    if (rc < 0)
        return -1;
    const struct backup_trailer *t = backup_reader_trailer(s->rd);
    char text[160];
    size_t n = backup_signed_text(t->manifest, text, sizeof(text));
    snprintf(s->rep->signer, sizeof(s->rep->signer), "%s", t->key_id);
    if (vault_audit_verify(s->v, t->key_id, text, n, t->sig, err) != 0) {
        error_prefix(err, "the backup's signature does not verify (altered, "
                     "or not made by the node of this keystore)");
        return -1;
    }
    if (!s->have_db || !s->have_conf)
        return error_set(err, "the backup holds no %s: it cannot rebuild "
                         "a data dir", s->have_db ? "wharf.conf"
                                                  : "wharf.db");
    if (s->rep->payloads != s->rep->info.payloads)
        return error_set(err, "the backup holds %lld payload entries, its "
                         "header says %lld", (long long)s->rep->payloads,
                         (long long)s->rep->info.payloads);
    return 0;
}

static int rs_run_init(struct rs_run *s, const struct backup_keys *k,
                       struct backup_report *rep, struct error *err)
{
    memset(s, 0, sizeof(*s));
    memset(rep, 0, sizeof(*rep));
    s->k = k;
    s->rep = rep;
    s->fd = -1;
    s->buf = malloc(RS_CHUNK);
    return s->buf != NULL ? 0 : error_set(err, "out of memory");
}

static void rs_run_free(struct rs_run *s)
{
    backup_reader_free(s->rd);
    vault_close(s->v);
    if (s->fd >= 0)
        close(s->fd);
    free(s->buf);
}

int backup_verify(const char *file, const struct backup_keys *k,
                  struct backup_report *rep, struct error *err)
{
    struct rs_run s;
    int rc = rs_run_init(&s, k, rep, err);
    if (rc == 0)
        rc = rs_open(&s, file, err);
    if (rc == 0)
        rc = rs_entries(&s, err);
    rs_run_free(&s);
    return rc;
}

/* ---- restore ---------------------------------------------------------------- */

/* dir must be absent (made here, 0700: *made = 1) or an empty folder. */
static int rs_target(const char *dir, int *made, struct error *err)
{
    *made = 0;
    if (mkdir(dir, 0700) == 0) {
        *made = 1;
        return 0;
    }
    if (errno != EEXIST)
        return error_errno(err, errno, "cannot create %s", dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return error_errno(err, errno, "%s exists and is not a folder we "
                           "can read", dir);
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    if (!empty)
        return error_set(err, "%s is not empty: restore only into a new or "
                         "empty folder (it never overwrites a data dir)",
                         dir);
    if (chmod(dir, 0700) != 0)
        return error_errno(err, errno, "cannot chmod 700 %s", dir);
    return 0;
}

/* Make what was written durable, then the keystore (the commit point). */
static int rs_commit(struct rs_run *s, struct error *err)
{
    char path[PATH_MAX];
    int fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot open %s", s->dir);
    int rc = syncfs(fd) == 0 ? 0 : error_errno(err, errno, "cannot sync %s",
                                               s->dir);
    close(fd);
    fd = s->payloads != NULL ? open(s->payloads, O_RDONLY | O_DIRECTORY |
                                    O_CLOEXEC) : -1;
    if (rc == 0 && fd >= 0 && syncfs(fd) != 0)     /* another file system? */
        rc = error_errno(err, errno, "cannot sync %s", s->payloads);
    if (fd >= 0)
        close(fd);
    if (rc == 0 && (size_t)snprintf(path, sizeof(path), "%s/logs",
                                    s->dir) >= sizeof(path))
        rc = error_set(err, "restore path too long");
    if (rc == 0 && mkdir(path, 0700) != 0)
        rc = error_errno(err, errno, "cannot create %s", path);
    snprintf(path, sizeof(path), "%s/keystore", s->dir);
    if (rc == 0)
        rc = vault_save_new(s->v, path, err);
    return rc == 0 ? fsx_fsync_dir(s->dir, err) : -1;
}

/* The restored data dir opens; its database checks; its trail verifies;
 * the sessions it holds end. */
static int rs_check_restored(const char *dir, struct backup_report *rep,
                             struct error *err)
{
    char db[PATH_MAX];
    snprintf(db, sizeof(db), "%s/wharf.db", dir);
    if (store_backup_check(db, err) != 0)
        return -1;
    struct wharf *w = wharf_open(dir, err);
    struct store *st = w != NULL ? store_open(w->db_path, err) : NULL;
    struct audit_report ar;
    int rc = st == NULL ? -1 : audit_verify(st, w->vault, &ar, err);
    if (rc > 0)
        rc = error_set(err, "the restored audit trail does not verify: %s",
                       ar.problem);
    if (rc == 0)
        rep->audit_entries = ar.entries;
    if (rc == 0)
        rc = store_backup_restored(st, time_now_ms(), &rep->sessions_ended,
                                   err);
    store_close(st);
    wharf_close(w);
    return rc;
}

/* A restore into PostgreSQL: the target given is a URL. */
static int rs_is_pg(const struct backup_target *t)
{
    return t != NULL && t->store != NULL && t->store[0] != '\0' &&
           strcmp(t->store, "sqlite") != 0;
}

/* --payload-dir database: payloads in the PostgreSQL store's rows. */
static int rs_payloads_db(const struct backup_target *t)
{
    return t != NULL && t->payload_dir != NULL &&
           strcmp(t->payload_dir, "database") == 0;
}

/* Before anything is written: the target is one wharf.conf takes (a URL
 * with a password is refused: it would land in wharf.conf), and a
 * database holds no Wharf rows. */
static int rs_precheck(const struct backup_target *t, struct error *err)
{
    if (t == NULL)
        return 0;
    if (t->payload_dir != NULL && t->payload_dir[0] != '/' &&
        !rs_payloads_db(t))
        return error_set(err, "--payload-dir must be an absolute path or "
                         "database");
    if (wharf_conf_store_check(t->store, t->payload_dir, err) != 0) {
        error_prefix(err, "--store");
        return -1;
    }
    if (t->store_password != NULL && !rs_is_pg(t))
        return error_set(err, "--store-password-file is for a restore into "
                         "PostgreSQL (--store postgresql://...)");
    if (t->store_password != NULL &&
        store_password_set(t->store_password, err) != 0)
        return -1;
    return rs_is_pg(t) ? store_backup_target_empty(t->store, err) : 0;
}

/* Everything of the backup into dir (and the payload folder), checked,
 * wharf.conf pointed at SQLite in dir and at the payload folder, synced,
 * keystore last. On failure everything written is removed. */
static int rs_write(struct rs_run *s, const char *file,
                    const struct backup_target *t, struct error *err)
{
    int touched = 0, touched_p = 0;
    char conf[PATH_MAX];
    int rc = rs_open(s, file, err);         /* nothing written before */
    if (rc == 0 && (rc = rs_target(s->dir, &s->made, err)) == 0)
        touched = 1;
    if (rc == 0 && s->payloads != NULL &&
        (rc = rs_target(s->payloads, &s->made_p, err)) == 0)
        touched_p = 1;
    if (rc == 0)
        rc = rs_entries(s, err);
    snprintf(conf, sizeof(conf), "%s/wharf.conf", s->dir);
    if (rc == 0)        /* (database: files in DIR/payloads until rs_to_pg) */
        rc = wharf_conf_set_store(conf, NULL, t && !rs_payloads_db(t)
                                  ? t->payload_dir : NULL, err);
    if (rc == 0)
        rc = rs_commit(s, err);
    if (rc != 0 && touched_p)
        fsx_remove_tree(s->payloads, s->made_p);
    if (rc != 0 && touched)
        fsx_remove_tree(s->dir, s->made);
    return rc;
}

/* --store-password-file: sealed with the restored keystore into dir. */
static int rs_save_password(const char *dir, const struct secret *pw,
                            struct error *err)
{
    struct wharf *w = wharf_open(dir, err);
    int rc = w == NULL ? -1 : dbpass_save(w->vault, dir, pw, err);
    wharf_close(w);
    return rc;
}

/* One restored payload file (DIR/payloads/DAY/NAME) into the rows of the
 * database w keeps its payloads in, then the file removed. */
static int rs_payload_to_db(struct wharf *w, const char *day,
                            const char *name, unsigned char *buf,
                            struct error *err)
{
    char rel[PATH_MAX], path[PATH_MAX];
    struct payload_io io;
    uint64_t size = 0;
    snprintf(rel, sizeof(rel), "payloads/%s/%s", day, name);
    snprintf(path, sizeof(path), "%s/%s/%s", w->payload_dir, day, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return error_errno(err, errno, "cannot open %s", path);
    if (wharf_payload_raw(w, rel, 1, &io, &size, err) != 0) {
        close(fd);
        return -1;
    }
    int rc = 0;
    ssize_t k;
    while ((k = read(fd, buf, RS_CHUNK)) > 0 && rc == 0)
        rc = io.write(io.ctx, buf, (size_t)k, err);
    if (rc == 0 && k < 0)
        rc = error_errno(err, errno, "cannot read %s", path);
    if (rc == 0)
        rc = io.commit(io.ctx, err);
    io.release(io.ctx, rc != 0);
    close(fd);
    return rc == 0 ? (unlink(path) == 0 ? 0 : error_errno(err, errno,
                      "cannot remove %s", path)) : -1;
}

/* Every restored payload file into the database (payload_dir = database):
 * the data dir is opened as the node will be, so the rows go where it
 * reads them. */
static int rs_payloads_to_db(const char *dir, struct error *err)
{
    struct wharf *w = wharf_open(dir, err);
    unsigned char *buf = malloc(RS_CHUNK);
    DIR *top = w != NULL && buf != NULL ? opendir(w->payload_dir) : NULL;
    int rc = top != NULL ? 0 : w == NULL ? -1
           : error_errno(err, buf ? errno : ENOMEM, "cannot read %s",
                         w->payload_dir);
    struct dirent *d;
    while (rc == 0 && (d = readdir(top)) != NULL) {
        char sub[PATH_MAX];
        if (d->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", w->payload_dir, d->d_name);
        DIR *day = opendir(sub);
        struct dirent *f;
        while (day != NULL && rc == 0 && (f = readdir(day)) != NULL)
            if (f->d_name[0] != '.')
                rc = rs_payload_to_db(w, d->d_name, f->d_name, buf, err);
        if (day != NULL)
            closedir(day);
        if (rc == 0 && rmdir(sub) != 0)
            rc = error_errno(err, errno, "cannot remove %s", sub);
    }
    if (top != NULL)
        closedir(top);
    free(buf);
    wharf_close(w);
    return rc;
}

/* The restored (and checked) SQLite data dir into the PostgreSQL database
 * of t: the rows in one transaction, then wharf.conf names the database,
 * and wharf.db leaves dir (the anchor stays: the node's, naming the
 * snapshot's newest entry, which the database now holds). 1 when the load failed (nothing is in the database), -1
 * when a later step failed, 0 done. */
static int rs_to_pg(const char *dir, const struct backup_target *t,
                    struct error *err)
{
    char db[PATH_MAX], conf[PATH_MAX];
    snprintf(db, sizeof(db), "%s/wharf.db", dir);
    snprintf(conf, sizeof(conf), "%s/wharf.conf", dir);
    if (store_backup_load(db, t->store, err) != 0)
        return 1;
    if (t->store_password != NULL &&
        rs_save_password(dir, t->store_password, err) != 0)
        return -1;
    if (wharf_conf_set_store(conf, t->store, t->payload_dir, err) != 0)
        return -1;
    if (rs_payloads_db(t) && rs_payloads_to_db(dir, err) != 0)
        return -1;
    unlink(db);
    for (size_t i = 0; i < 2; i++) {    /* what SQLite kept beside it */
        char side[PATH_MAX + 8];
        snprintf(side, sizeof(side), "%s%s", db, i == 0 ? "-wal" : "-shm");
        unlink(side);
    }
    return fsx_fsync_dir(dir, err);
}

/* The data dir on PostgreSQL opens and its trail verifies there. */
static int rs_check_pg(const char *dir, struct backup_report *rep,
                       struct error *err)
{
    struct wharf *w = wharf_open(dir, err);
    struct store *st = w != NULL ? store_open(w->db_path, err) : NULL;
    struct audit_report ar;
    int rc = st == NULL ? -1 : audit_verify(st, w->vault, &ar, err);
    if (rc > 0)
        rc = error_set(err, "the audit trail loaded into the database does "
                       "not verify: %s", ar.problem);
    if (rc == 0)
        rep->audit_entries = ar.entries;
    store_close(st);
    wharf_close(w);
    return rc;
}

static int rs_finish_pg(const struct rs_run *s, const struct backup_target *t,
                        struct backup_report *rep, struct error *err)
{
    int rc = rs_to_pg(s->dir, t, err);
    if (rc == 1) {          /* the database is as it was: undo the rest */
        fsx_remove_tree(s->dir, s->made);
        if (s->payloads != NULL)
            fsx_remove_tree(s->payloads, s->made_p);
        error_prefix(err, "nothing was loaded into the database");
        return -1;
    }
    if (rc == 0)
        rc = rs_check_pg(s->dir, rep, err);
    if (rc != 0)
        error_prefix(err, "loaded into the database, but");
    return rc;
}

int backup_restore(const char *file, const char *dir,
                   const struct backup_keys *k,
                   const struct backup_target *t, struct backup_report *rep,
                   struct error *err)
{
    struct rs_run s;
    int rc = rs_run_init(&s, k, rep, err);
    s.dir = dir;
    s.payloads = t != NULL && !rs_payloads_db(t) ? t->payload_dir : NULL;
    if (rc == 0)
        rc = rs_precheck(t, err);
    if (rc == 0)
        rc = rs_write(&s, file, t, err);
    rs_run_free(&s);
    if (rc != 0)
        return -1;
    if (rs_check_restored(dir, rep, err) != 0) {
        error_prefix(err, "restored into %s, but", dir);
        return -1;
    }
    return rs_is_pg(t) ? rs_finish_pg(&s, t, rep, err) : 0;
}
