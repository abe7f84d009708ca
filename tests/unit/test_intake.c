/*
 * test_intake.c - core/intake.c over a real data dir made by wharf_init:
 * what the intake of new messages syncs (M2).
 */
#include "testutil.h"
#include "wharf_fixture.h"

#include <sys/stat.h>
#include <unistd.h>

#include "core/intake.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_m2_payload_day_folder_synced_once_per_process,
            wharf_fixture_setup, wharf_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
