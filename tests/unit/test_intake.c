/*
 * test_intake.c - core/intake.c over a real data dir made by wharf_init:
 * what the intake of new messages syncs (M2).
 */
#include "testutil.h"
#include "wharf_fixture.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/intake.h"
#include "util/id.h"
#include "util/syncgroup.h"

/* One message through an intake of its own, as an AS2 or HTTP request
 * takes it. */
static void take_one(struct wharf_fixture *f, const char *name)
{
    static const char *const next[] = { "out" };
    struct error err = {0};
    struct intake *in = intake_new(f->w, f->st, "in", next, 1);
    assert_non_null(in);
    if (intake_begin(in, name, NULL, &err) != 0 ||
        intake_write(in, "ISA*00*", 7, &err) != 0 ||
        intake_end(in, &err) != 0 || intake_commit(in, &err) != 0)
        fail_msg("intake of %s: %s", name, err.msg);
    intake_free(in);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_m2_payload_day_folder_synced_once_per_process,
            wharf_fixture_setup, wharf_fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_m2_payload_kept_when_a_commit_fails_after_it_happened,
            wharf_fixture_setup, wharf_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
