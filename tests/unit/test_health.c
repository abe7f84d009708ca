/*
 * test_health.c - what /healthz and `wharf status` report (R18, core/
 * health.h): ok with no problem; a left-out connector at once; a failing
 * source only past the threshold, and no more once a poll works or once
 * it is no longer running; a malformed state is unhealthy; the mirror file
 * holds the same state.
 */
#include "testutil.h"

#include <unistd.h>

#include "core/health.h"
#include "util/fsx.h"
#include "util/id.h"

/* The report of the current state at now_ms; *healthy set. */
static json_t *report_at(int64_t now_ms, int *healthy)
{
    json_t *st = health_state();
    assert_non_null(st);
    json_t *r = health_report(st, now_ms, healthy);
    json_decref(st);
    assert_non_null(r);
    return r;
}

static const char *problem_field(const json_t *r, size_t i, const char *k)
{
    return json_string_value(json_object_get(
        json_array_get(json_object_get(r, "problems"), i), k));
}

static size_t problems(const json_t *r)
{
    return json_array_size(json_object_get(r, "problems"));
}

static void test_r18_health_ok_and_left_out(void **state)
{
    (void)state;
    health_start(NULL, 60000);
    int ok = 0;
    json_t *r = report_at(time_now_ms(), &ok);
    assert_int_equal(ok, 1);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "ok");
    assert_int_equal(problems(r), 0);
    json_decref(r);

    const char *left[] = { "inbox" };
    health_left_out(left, 1);
    r = report_at(time_now_ms(), &ok);
    assert_int_equal(ok, 0);
    assert_string_equal(json_string_value(json_object_get(r, "status")),
                        "unhealthy");
    assert_int_equal(problems(r), 1);
    assert_string_equal(problem_field(r, 0, "connector"), "inbox");
    assert_string_equal(problem_field(r, 0, "problem"), "left_out");
    assert_non_null(strstr(problem_field(r, 0, "text"), "inbox"));
    json_decref(r);

    health_left_out(NULL, 0);
    r = report_at(time_now_ms(), &ok);
    assert_int_equal(ok, 1);
    json_decref(r);
    health_stop();
}

static void test_r18_health_failing_source_after_threshold(void **state)
{
    (void)state;
    health_start(NULL, 5000);
    int64_t t0 = time_now_ms();
    health_poll("inbox", false);
    health_poll("inbox", false);        /* still the first failure's time */
    health_poll("other", true);
    int ok = 0;
    json_t *r = report_at(t0, &ok);
    assert_int_equal(ok, 1);            /* not yet past the threshold */
    json_decref(r);
    r = report_at(t0 + 60000, &ok);
    assert_int_equal(ok, 0);
    assert_int_equal(problems(r), 1);
    assert_string_equal(problem_field(r, 0, "connector"), "inbox");
    assert_string_equal(problem_field(r, 0, "problem"), "poll_failing");
    assert_non_null(problem_field(r, 0, "since"));
    json_int_t secs = json_integer_value(json_object_get(
        json_array_get(json_object_get(r, "problems"), 0), "seconds"));
    assert_true(secs >= 59 && secs <= 60);
    json_decref(r);

    health_set_failing_ms(3600 * 1000);     /* a reload raised it */
    r = report_at(t0 + 60000, &ok);
    assert_int_equal(ok, 1);
    json_decref(r);
    health_set_failing_ms(5000);

    health_poll("inbox", true);             /* works again */
    r = report_at(t0 + 60000, &ok);
    assert_int_equal(ok, 1);
    json_decref(r);

    health_poll("inbox", false);            /* fails again, then removed */
    const char *running[] = { "other" };
    health_running(running, 1);
    r = report_at(t0 + 3600000, &ok);
    assert_int_equal(ok, 1);
    json_decref(r);
    health_stop();
}

static void test_r18_health_malformed_state_is_unhealthy(void **state)
{
    (void)state;
    int ok = 1;
    json_t *bad = json_pack("{s:s}", "left_out", "x");
    json_t *r = health_report(bad, time_now_ms(), &ok);
    assert_int_equal(ok, 0);
    assert_string_equal(problem_field(r, 0, "problem"), "unreadable");
    json_decref(r);
    json_decref(bad);
}

/* The mirror file is rewritten when the problems change, and its state
 * gives the same report. */
static void test_r18_health_file_mirrors_state(void **state)
{
    (void)state;
    char dir[256], path[300];
    test_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/health.json", dir);
    health_start(path, 0);
    const char *left[] = { "a", "b" };
    health_left_out(left, 2);
    health_poll("c", false);
    char *text = NULL;
    size_t len = 0;
    struct error err = {0};
    assert_int_equal(fsx_read_all(path, 1 << 20, &text, &len, &err), 0);
    json_t *st = json_loadb(text, len, 0, NULL);
    free(text);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "pid")), getpid());
    int ok = 1;
    int64_t now = time_now_ms();
    json_t *from_file = health_report(st, now, &ok);
    assert_int_equal(ok, 0);
    json_t *live = report_at(now, &ok);
    assert_true(json_equal(from_file, live));
    assert_int_equal(problems(live), 3);
    json_decref(from_file);
    json_decref(live);
    json_decref(st);
    health_stop();
    test_rmtree(dir);
}

/* The periodic checks' problems: reported with kind, name and text; a
 * problem still there at the next check keeps its first "since"; one that
 * is gone is no longer reported. */
static void test_r18_health_checks_keep_since(void **state)
{
    (void)state;
    health_start(NULL, 60000);
    json_t *p = json_pack("[{s:s, s:s, s:s}]", "problem", "disk_low",
                          "name", "data", "text", "12 MiB free");
    health_checks(p);
    json_t *st = health_state();
    json_int_t since = json_integer_value(json_object_get(json_array_get(
        json_object_get(st, "checks"), 0), "since"));
    json_decref(st);
    assert_true(since > 0);
    usleep(5000);
    json_t *q = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "problem",
                          "disk_low", "name", "data", "text", "11 MiB free",
                          "problem", "audit_broken", "name", "audit", "text",
                          "broken");
    health_checks(q);
    st = health_state();
    json_t *checks = json_object_get(st, "checks");
    assert_int_equal(json_array_size(checks), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(
        checks, 0), "since")), since);
    assert_true(json_integer_value(json_object_get(json_array_get(checks, 1),
                                                   "since")) > since);
    json_decref(st);
    int ok = 1;
    json_t *r = report_at(time_now_ms(), &ok);
    assert_int_equal(ok, 0);
    assert_int_equal(problems(r), 2);
    assert_string_equal(problem_field(r, 0, "problem"), "disk_low");
    assert_string_equal(problem_field(r, 0, "name"), "data");
    assert_string_equal(problem_field(r, 0, "text"), "11 MiB free");
    assert_non_null(problem_field(r, 1, "since"));
    json_decref(r);
    json_t *none = json_array();
    health_checks(none);
    r = report_at(time_now_ms(), &ok);
    assert_int_equal(ok, 1);
    json_decref(r);
    json_decref(none);
    json_decref(q);
    json_decref(p);
    health_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r18_health_ok_and_left_out),
        cmocka_unit_test(test_r18_health_failing_source_after_threshold),
        cmocka_unit_test(test_r18_health_malformed_state_is_unhealthy),
        cmocka_unit_test(test_r18_health_file_mirrors_state),
        cmocka_unit_test(test_r18_health_checks_keep_since),
    };
    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
