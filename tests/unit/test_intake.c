/*
 * test_intake.c - core/intake.c over a real data dir made by wharf_init:
 * what the intake of new messages syncs (M2).
 */
#include "testutil.h"
#include "wharf_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/intake.h"
#include "core/payloads.h"
#include "util/id.h"
#include "util/syncgroup.h"

/* One message through an intake of its own, as an AS2 or HTTP request
 * takes it; its id and payload file (4300 bytes). */
static void take_stored(struct wharf_fixture *f, const char *name,
                        char id[ID_LEN + 1], char *path)
{
    static const char *const next[] = { "out" };
    struct error err = {0};
    struct intake *in = intake_new(f->w, f->st, "in", next, 1);
    assert_non_null(in);
    if (intake_begin(in, name, NULL, &err) != 0 ||
        intake_write(in, "ISA*00*", 7, &err) != 0 ||
        intake_end(in, &err) != 0)
        fail_msg("intake of %s: %s", name, err.msg);
    snprintf(id, ID_LEN + 1, "%s", intake_id(in, 0));
    if (intake_commit(in, &err) != 0)
        fail_msg("intake of %s: %s", name, err.msg);
    intake_free(in);
    struct store_message m;
    assert_int_equal(store_message_get(f->st, id, &m, &err), 0);
    assert_int_equal(wharf_path(f->w, m.payload_path, path, 4300), 0);
    store_message_clear(&m);
}

static void take_one(struct wharf_fixture *f, const char *name)
{
    char id[ID_LEN + 1], path[4300];
    take_stored(f, name, id, path);
}

/* The day's payload folder is made durable (its entry in payload_dir
 * fsynced) once per process, not once per intake: each request has an
 * intake of its own, and this was one fsync per message. */
static void test_m2_payload_day_folder_synced_once_per_process(void **state)
{
    struct wharf_fixture *f = *state;
    take_one(f, "first.edi");               /* makes today's folder */
    struct stat sb;
    assert_int_equal(stat(f->w->payload_dir, &sb), 0);
    struct sync_group *g = sync_group_of(sb.st_dev, sb.st_ino);
    assert_non_null(g);
    unsigned long long before = sync_group_tickets(g);
    take_one(f, "second.edi");
    take_one(f, "third.edi");
    assert_int_equal(sync_group_tickets(g) - before, 0);
}

/* A commit that happened but was reported failed (PostgreSQL's
 * connection lost before COMMIT's answer: a failover) leaves the message
 * stored, so its payload must stay: the source sends the file again, is
 * told it is a duplicate, and deletes it; the stored message is then all
 * there is. The payload of a commit that did not happen goes. */
static void test_m2_payload_kept_when_a_commit_fails_after_it_happened(
    void **state)
{
    struct wharf_fixture *f = *state;
    static const char *const next[] = { "out" };
    struct error err = {0};
    struct intake *in = intake_new(f->w, f->st, "in", next, 1);
    assert_non_null(in);
    setenv("WHARF_FAULT", "store.intake_lost:1:EIO,store.intake:2:EIO", 1);
    if (intake_begin(in, "po.edi", NULL, &err) != 0 ||
        intake_write(in, "ISA*00*", 7, &err) != 0 || intake_end(in, &err) != 0)
        fail_msg("intake: %s", err.msg);
    char id[ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", intake_id(in, 0));
    assert_int_equal(intake_commit(in, &err), -1);      /* "failed" */
    struct store_message m;
    assert_int_equal(store_message_get(f->st, id, &m, &err), 0);
    char path[4300];
    assert_int_equal(wharf_path(f->w, m.payload_path, path, sizeof(path)), 0);
    store_message_clear(&m);
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("the payload of stored message %s is gone: %s", id, path);
    /* a commit that did not happen (store.intake's 2nd: rolled back) */
    if (intake_begin(in, "po2.edi", NULL, &err) != 0 ||
        intake_write(in, "ISA*00*", 7, &err) != 0 || intake_end(in, &err) != 0)
        fail_msg("intake: %s", err.msg);
    snprintf(id, sizeof(id), "%s", intake_id(in, 0));
    char pattern[4400];
    snprintf(pattern, sizeof(pattern), "%s/*/%s.wpay", f->w->payload_dir, id);
    glob_t g;
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);    /* written */
    globfree(&g);
    assert_int_equal(intake_commit(in, &err), -1);
    unsetenv("WHARF_FAULT");
    assert_int_equal(store_message_get(f->st, id, &m, &err), 1);
    assert_int_equal(glob(pattern, 0, NULL, &g), GLOB_NOMATCH);
    intake_free(in);
}

/* Remove message id's rows behind the store's back, as if its commit had
 * never happened: its payload file is then an orphan. */
static void rows_forget(struct wharf_fixture *f, const char *id)
{
    static const char *const sql[] = {
        "DELETE FROM events WHERE message_id = ?1",
        "DELETE FROM hops WHERE message_id = ?1",
        "DELETE FROM messages WHERE id = ?1",
    };
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->w->db_path, &db), SQLITE_OK);
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_prepare_v2(db, sql[i], -1, &q, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(q), SQLITE_DONE);
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
}

/* Set path's last write time (a link's own) to ms. */
static void file_aged(const char *path, int64_t ms)
{
    struct timespec t[2] = { { ms / 1000, ms % 1000 * 1000000 },
                             { ms / 1000, ms % 1000 * 1000000 } };
    assert_int_equal(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
}

/* Move the file at path (n bytes of room) into the day folder of its
 * payload dir for UTC time ms, as a file written then lies: a file aged
 * in today's folder is one no intake makes (the sweep passes over a day
 * that began after its cut-off, so such a test fails from midnight UTC to
 * six). path is updated. */
static void file_to_day_of(char *path, size_t n, const char *payload_dir,
                           int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char day[16], to[4500];
    gmtime_r(&t, &tm);
    strftime(day, sizeof(day), "%Y%m%d", &tm);
    const char *base = strrchr(path, '/');
    snprintf(to, sizeof(to), "%s/%s", payload_dir, day);
    assert_true(mkdir(to, 0700) == 0 || errno == EEXIST);
    snprintf(to, sizeof(to), "%s/%s%s", payload_dir, day, base);
    assert_int_equal(rename(path, to), 0);
    assert_true(strlen(to) < n);
    snprintf(path, n, "%s", to);
}

/* A file at path: a copy of from, or n zero bytes when from is NULL. */
static void file_put(const char *path, const char *from, size_t n)
{
    char buf[4096] = {0};
    int in = from ? open(from, O_RDONLY) : -1;
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(out >= 0 && (from == NULL || in >= 0));
    ssize_t k;
    while (from && (k = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)k), k);
    if (from == NULL)
        assert_int_equal(write(out, buf, n), (ssize_t)n);
    close(out);
    if (in >= 0)
        close(in);
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* A path in folder dir named for a new id (".wpay"). */
static void new_name(char *out, size_t n, const char *dir)
{
    char id[ID_LEN + 1];
    id_new(id);
    snprintf(out, n, "%s/%s.wpay", dir, id);
}

static int64_t sweep(struct wharf_fixture *f, int64_t before)
{
    int64_t n = -1;
    struct error err = {0};
    if (wharf_payloads_sweep(f->w, f->st, before, &n, &err) != 0)
        fail_msg("sweep: %s", err.msg);
    return n;
}

/* A payload file no message names (its intake killed before the commit,
 * or kept when the store could not say whether the commit happened) is
 * shredded by the purge once older than the cut-off, in any day's folder;
 * the payload of a stored message, a newer orphan, a file that is not
 * this keystore's payload of its name, a link and other names are left.
 * Each sweep looks at the files written since the last one's cut-off. */
static void test_m2_payload_files_no_message_names_are_swept(void **state)
{
    struct wharf_fixture *f = *state;
    char kept[4300], orphan[4300], fresh[4300], id[ID_LEN + 1];
    take_stored(f, "kept.edi", id, kept);
    take_stored(f, "orphan.edi", id, orphan);
    rows_forget(f, id);
    take_stored(f, "fresh.edi", id, fresh);
    rows_forget(f, id);
    char old[4400], cut_short[4500], forged[4500], link[4500], other[4500];
    snprintf(old, sizeof(old), "%s/20260101", f->w->payload_dir);
    assert_int_equal(mkdir(old, 0700), 0);
    new_name(cut_short, sizeof(cut_short), old); /* killed in its header */
    file_put(cut_short, NULL, 10);
    new_name(forged, sizeof(forged), old);      /* a payload, not of this id */
    file_put(forged, kept, 0);
    new_name(link, sizeof(link), old);
    assert_int_equal(symlink(kept, link), 0);
    snprintf(other, sizeof(other), "%s/notes.txt", old);
    file_put(other, NULL, 10);
    /* a link named like a day folder, to a folder holding an orphan of
     * ours: never entered */
    char away[4400], away_day[4400], away_orphan[4500];
    snprintf(away, sizeof(away), "%s/away", f->dir);
    assert_int_equal(mkdir(away, 0700), 0);
    new_name(away_orphan, sizeof(away_orphan), away);
    file_put(away_orphan, NULL, 10);        /* cut short: swept if entered */
    snprintf(away_day, sizeof(away_day), "%s/20260102", f->w->payload_dir);
    assert_int_equal(symlink(away, away_day), 0);
    int64_t now = time_now_ms(), aged = now - 7 * 3600 * 1000LL;
    const char *const old_ones[] = { kept, orphan, cut_short, forged, link,
                                     other, away_orphan };
    for (size_t i = 0; i < 7; i++)
        file_aged(old_ones[i], aged);
    file_to_day_of(orphan, sizeof(orphan), f->w->payload_dir, aged);

    assert_int_equal(sweep(f, now - 6 * 3600 * 1000LL), 2);
    assert_false(exists(orphan));
    assert_false(exists(cut_short));
    assert_true(exists(kept) && exists(fresh) && exists(forged) &&
                exists(link) && exists(other) && exists(away_orphan));
    /* the next sweep, 6 hours on: the orphan written since */
    assert_int_equal(sweep(f, now + 1000), 1);
    assert_false(exists(fresh));
    assert_true(exists(kept) && exists(forged) && exists(link) &&
                exists(other));
    assert_int_equal(sweep(f, now + 2000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_m2_payload_day_folder_synced_once_per_process,
            wharf_fixture_setup, wharf_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_m2_payload_kept_when_a_commit_fails_after_it_happened,
            wharf_fixture_setup, wharf_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_m2_payload_files_no_message_names_are_swept,
            wharf_fixture_setup, wharf_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
