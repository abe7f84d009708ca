/*
 * testutil.h - what every cmocka unit test includes: cmocka's required
 * headers in the right order, and a temp-dir helper.
 */
#ifndef WHARF_TESTUTIL_H
#define WHARF_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mkdtemp under $TMPDIR (or /tmp) into buf; fails the test on error. */
static inline void test_tmpdir(char *buf, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/wharf-unit-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(buf));
}

/* rm -rf dir (test cleanup only). */
static inline void test_rmtree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
}

#endif
