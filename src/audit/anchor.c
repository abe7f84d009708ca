/*
 * anchor.c - the signed head anchor of the audit trail (R18): a file
 * outside the audit table, DIR/state/audit.head beside the database, that names
 * the newest entry so that deleting the newest entries (which leaves a
 * perfectly valid, shorter chain) is detected by `wharf audit verify`.
 *
 * On a PostgreSQL store (a cluster) each node keeps its own, in its data
 * dir (audit_set_node_dir, owned here: the store URL and dir of the node
 * this process serves, under a mutex), moved after that node's appends
 * and checkpoints to the head it reads then: it may lag the shared chain
 * (entries other nodes appended since), never lead it, and a node's
 * verify checks its own anchor (decision 0007).
 *
 * File format (text, LF line ends, mode 0600), every line required:
 *
 *   wharf-audit-head v1
 *   seq <decimal seq of the anchored entry>
 *   hash <its hash, 64 lowercase hex>
 *   key <id of the audit key that signed, 16 lowercase hex>
 *   sig <Ed25519 signature, 128 lowercase hex>
 *
 * The signature covers "wharf-audit-head v1\n<seq>\n<hash>\n" (a domain of
 * its own: a checkpoint signature cannot pass for an anchor). It is written
 * after the append's transaction committed (audit_anchor_update): temp file,
 * fsync, rename, fsync of the directory (fsx_write_atomic), under an flock
 * of DIR/state/audit.head.lock, naming the head as read then, so concurrent
 * writers (serve's threads, CLI commands) leave the newest head in place.
 * Run as root on a data dir another user owns (a CLI command), the files
 * are given to the owner of state/, so the sandboxed serve can still move
 * the anchor.
 * It therefore never names an entry that is not committed; after a crash
 * between the commit and the write it lags (names an older entry, which is
 * still in the trail) until the next append moves it. It is only moved on
 * from an anchor that verifies and whose entry is still in the trail with
 * the same hash: an anchor that no longer matches is evidence and stays.
 *
 * What it proves and what it does not (the remaining window, also in
 * docs/operations.md): entries deleted or rewritten at or before the
 * anchored entry are reported; entries after it (the ones appended since
 * the last anchor write, i.e. none unless a crash interrupted that write)
 * are not. The anchor holds no secret but the signature, so an attacker who
 * can write the data dir can put back an OLDER anchor file they saved
 * earlier (a valid signature) and delete every entry after the entry it
 * names: that is not detectable from the data dir alone. Keep a copy of the
 * anchor elsewhere (e.g. ship `audit.head` to a log server) to close that.
 *
 * Owns nothing beyond a call. Must never hold key material (the vault signs
 * and verifies), write an anchor naming an uncommitted entry, or replace an
 * anchor that does not match the trail.
 */
#include "audit/audit_anchor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "store/audit_store.h"
#include "store/store.h"
#include "util/fsx.h"
#include "util/log.h"

#define ANCHOR_MAGIC "wharf-audit-head v1"
#define ANCHOR_MAX 512                  /* bytes: far more than a real one */
#define ANCHOR_SIG_HEX (2 * VAULT_SIG_LEN)

/* The node's data dir of a shared store (audit_set_node_dir). */
static struct {
    pthread_mutex_t mu;
    char url[1024], dir[PATH_MAX];
} anchor_g = { .mu = PTHREAD_MUTEX_INITIALIZER };

void audit_set_node_dir(const char *store_url, const char *dir)
{
    pthread_mutex_lock(&anchor_g.mu);
    snprintf(anchor_g.url, sizeof(anchor_g.url), "%s",
             store_url && dir ? store_url : "");
    snprintf(anchor_g.dir, sizeof(anchor_g.dir), "%s",
             store_url && dir ? dir : "");
    pthread_mutex_unlock(&anchor_g.mu);
}

/* dir/state/audit.head of the node whose shared store st is into out; -1
 * when st is not the store of the registered node (a test's store, a
 * store opened from another URL). */
static int anchor_node_path(struct store *st, char *out, size_t n)
{
    int len = -1;
    pthread_mutex_lock(&anchor_g.mu);
    if (anchor_g.url[0] && store_opened_from(st, anchor_g.url))
        len = snprintf(out, n, "%s/" AUDIT_ANCHOR_FILE, anchor_g.dir);
    pthread_mutex_unlock(&anchor_g.mu);
    return len > 0 && (size_t)len < n ? 0 : -1;
}

int audit_anchor_path(struct store *st, char *out, size_t n)
{
    char dir[PATH_MAX];
    const char *db = store_audit_db_file(st);
    if (db[0] == '\0')
        return anchor_node_path(st, out, n);
    if (fsx_dirname(db, dir, sizeof(dir)) != 0)
        return -1;
    int len = snprintf(out, n, "%s/" AUDIT_ANCHOR_FILE, dir);
    return len > 0 && (size_t)len < n ? 0 : -1;
}

void audit_anchor_place(const char *path)
{
    char dir[PATH_MAX], top[PATH_MAX], old[PATH_MAX + 32];
    struct stat sb;
    if (fsx_dirname(path, dir, sizeof(dir)) != 0 ||
        fsx_dirname(dir, top, sizeof(top)) != 0)
        return;
    if (stat(dir, &sb) != 0 && mkdir(dir, 0700) == 0 && geteuid() == 0 &&
        stat(top, &sb) == 0)
        (void)!chown(dir, sb.st_uid, sb.st_gid);
    snprintf(old, sizeof(old), "%s/" AUDIT_ANCHOR_OLD, top);
    if (access(path, F_OK) != 0 && errno == ENOENT &&
        access(old, F_OK) == 0 && rename(old, path) == 0) {
        snprintf(old, sizeof(old), "%s/" AUDIT_ANCHOR_OLD ".lock", top);
        (void)unlink(old);
    }
}

/* Root writing in a state/ another user owns: give the file to that user. */
static void anchor_give(int fd, const char *path)
{
    char dir[PATH_MAX];
    struct stat sb;
    if (geteuid() != 0 || fsx_dirname(path, dir, sizeof(dir)) != 0 ||
        stat(dir, &sb) != 0 || sb.st_uid == 0)
        return;
    if (fd >= 0)
        (void)!fchown(fd, sb.st_uid, sb.st_gid);
    else
        (void)!chown(path, sb.st_uid, sb.st_gid);
}

/* The signed text of (seq, hash) into buf; its length, or -1. */
static int anchor_text(int64_t seq, const char *hash, char *buf, size_t n)
{
    int len = snprintf(buf, n, ANCHOR_MAGIC "\n%" PRId64 "\n%s\n", seq, hash);
    return len > 0 && (size_t)len < n ? len : -1;
}

/* The whole file for a into buf; its length, or -1. */
static int anchor_format(const struct audit_anchor *a, char *buf, size_t n)
{
    int len = snprintf(buf, n, ANCHOR_MAGIC "\nseq %" PRId64 "\nhash %s\n"
                       "key %s\nsig %s\n", a->seq, a->hash, a->key_id,
                       a->sig);
    return len > 0 && (size_t)len < n ? len : -1;
}

/* 1 when s is exactly n lowercase hex digits. */
static int anchor_is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int audit_anchor_parse(const char *data, size_t len, struct audit_anchor *a)
{
    char text[ANCHOR_MAX + 1], seq[24] = "", again[ANCHOR_MAX];
    memset(a, 0, sizeof(*a));
    if (len > ANCHOR_MAX || memchr(data, '\0', len) != NULL)
        return -1;
    memcpy(text, data, len);
    text[len] = '\0';
    if (sscanf(text, ANCHOR_MAGIC "\nseq %20[0-9]\nhash %64[0-9a-f]\nkey "
               "%16[0-9a-f]\nsig %128[0-9a-f]", seq, a->hash, a->key_id,
               a->sig) != 4)
        return -1;
    char *end;
    errno = 0;
    long long s = strtoll(seq, &end, 10);
    if (errno != 0 || *end != '\0' || s < 1)
        return -1;
    a->seq = s;
    if (!anchor_is_hex(a->hash, 64) ||
        !anchor_is_hex(a->key_id, VAULT_KEY_ID_LEN) ||
        !anchor_is_hex(a->sig, ANCHOR_SIG_HEX))
        return -1;
    /* the round trip rejects every other spelling (spaces, zeros, extra) */
    return anchor_format(a, again, sizeof(again)) > 0 &&
           strcmp(again, text) == 0 ? 0 : -1;
}

/* hex (already checked) to bytes. */
static void anchor_unhex(const char *hex, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned hi = (unsigned)OPENSSL_hexchar2int((unsigned char)hex[2 * i]);
        unsigned lo = (unsigned)OPENSSL_hexchar2int(
            (unsigned char)hex[2 * i + 1]);
        out[i] = (unsigned char)(hi << 4 | lo);
    }
}

int audit_anchor_load(struct vault *v, const char *path,
                      struct audit_anchor *a, char *problem, size_t n,
                      struct error *err)
{
    char *text = NULL, signed_text[160];
    size_t len = 0;
    struct error e = {0};
    unsigned char sig[VAULT_SIG_LEN];
    if (fsx_read_all(path, ANCHOR_MAX, &text, &len, &e) < 0) {
        if (e.code == ENOENT)
            return AUDIT_ANCHOR_NONE;
        *err = e;
        return -1;
    }
    int rc = audit_anchor_parse(text, len, a);
    free(text);
    if (rc < 0) {
        snprintf(problem, n, "it is malformed");
        return AUDIT_ANCHOR_BAD;
    }
    int tlen = anchor_text(a->seq, a->hash, signed_text, sizeof(signed_text));
    anchor_unhex(a->sig, sig, sizeof(sig));
    if (tlen < 0 || vault_audit_verify(v, a->key_id, signed_text,
                                       (size_t)tlen, sig, &e) != 0) {
        if (e.code == EPIPE) {      /* no verdict: the key process is gone */
            *err = e;
            return -1;
        }
        snprintf(problem, n, "%s", e.msg);
        return AUDIT_ANCHOR_BAD;
    }
    return AUDIT_ANCHOR_OK;
}

/* ---- moving the anchor ------------------------------------------------------ */

int audit_anchor_sign(struct vault *v, int64_t seq, const char *hash,
                      char *buf, size_t n, size_t *len, struct error *err)
{
    struct audit_anchor a = { .seq = seq };
    char text[160];
    unsigned char sig[VAULT_SIG_LEN];
    snprintf(a.hash, sizeof(a.hash), "%s", hash);
    int tlen = anchor_text(seq, hash, text, sizeof(text));
    if (tlen < 0 || seq < 1 || !anchor_is_hex(hash, 64))
        return error_set(err, "entry %" PRId64 " has a malformed hash", seq);
    if (vault_audit_sign(v, text, (size_t)tlen, sig, a.key_id, err) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(sig); i++)
        snprintf(a.sig + 2 * i, 3, "%02x", sig[i]);
    int flen = anchor_format(&a, buf, n);
    if (flen < 0)
        return error_set(err, "internal: anchor too long");
    *len = (size_t)flen;
    return 0;
}

/* Sign (seq, hash) and put the anchor at path durably. */
static int anchor_write(struct vault *v, const char *path, int64_t seq,
                        const char *hash, struct error *err)
{
    char file[ANCHOR_MAX];
    size_t flen = 0;
    if (audit_anchor_sign(v, seq, hash, file, sizeof(file), &flen, err) != 0)
        return -1;
    if (fsx_write_atomic(path, file, flen, 0600, err) < 0)
        return -1;
    anchor_give(-1, path);
    return 0;
}

/* Under the lock: check the current anchor still matches the trail, then
 * anchor the head. 0 done (or nothing to do), 1 the anchor in place is
 * evidence of tampering and stays (err says why), -1 error. */
static int anchor_advance(struct store *st, struct vault *v, const char *path,
                          struct error *err)
{
    struct audit_anchor old;
    char problem[ERROR_MSG_MAX], hash[65];
    int64_t head = 0;
    int state = audit_anchor_load(v, path, &old, problem, sizeof(problem),
                                  err);
    if (state < 0)
        return -1;
    if (state == AUDIT_ANCHOR_BAD) {
        error_set(err, "the anchor in place does not verify (%s); it is kept "
                  "as evidence: run wharf audit verify", problem);
        return 1;
    }
    if (state == AUDIT_ANCHOR_OK) {
        int found = store_audit_hash_at(st, old.seq, hash, err);
        if (found < 0)
            return -1;
        if (found == 0 || strcmp(hash, old.hash) != 0) {
            error_set(err, "the trail no longer holds entry %" PRId64 " as "
                      "the anchor names it; the anchor is kept as evidence: "
                      "run wharf audit verify", old.seq);
            return 1;
        }
    }
    if (store_audit_head_hash(st, &head, hash, err) < 0)
        return -1;
    if (head == 0 || (state == AUDIT_ANCHOR_OK && head == old.seq))
        return 0;
    return anchor_write(v, path, head, hash, err);
}

void audit_anchor_update(struct store *st, struct vault *v)
{
    char path[PATH_MAX], lock[PATH_MAX + 8];
    struct error err = {0};
    if (v == NULL || audit_anchor_path(st, path, sizeof(path)) < 0)
        return;
    audit_anchor_place(path);
    snprintf(lock, sizeof(lock), "%s.lock", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    anchor_give(fd, lock);
    int rc = fd < 0 ? error_errno(&err, errno, "cannot open %s", lock) : 0;
    while (rc == 0 && flock(fd, LOCK_EX) != 0)
        if (errno != EINTR)
            rc = error_errno(&err, errno, "cannot lock %s", lock);
    if (rc == 0)
        rc = anchor_advance(st, v, path, &err);
    if (fd >= 0)
        close(fd);
    if (rc > 0)
        log_error("audit head anchor %s not moved: %s", path, err.msg);
    else if (rc < 0)
        log_warn("audit head anchor %s not moved: %s", path, err.msg);
}
