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

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- PostgreSQL (R21): the server scripts/run-unit.sh started --------------
 * WHARF_TEST_PG is its admin URL (ending in /postgres). A test group that
 * runs against PostgreSQL fails, not skips, when it is missing. */

/* Run one administrative command (CREATE/DROP DATABASE) on that server. */
static inline void test_pg_admin(const char *cmd)
{
    PGconn *c = PQconnectdb(getenv("WHARF_TEST_PG"));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("PostgreSQL of WHARF_TEST_PG: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, cmd);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", cmd, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* A fresh, empty database: its name in name[64] and its URL in url (what
 * store_open takes). Drop it with test_pg_drop(name). The name is made of
 * numbers only (an identifier cannot be a bound parameter). */
static inline void test_pg_fresh(char *url, size_t n, char name[64])
{
    static int seq;
    const char *admin = getenv("WHARF_TEST_PG");
    const char *tail = admin ? strstr(admin, "/postgres") : NULL;
    if (tail == NULL)
        fail_msg("WHARF_TEST_PG is not set: run the unit tests through "
                 "scripts/run-unit.sh, which starts a PostgreSQL server");
    char cmd[128];
    snprintf(name, 64, "wt_%d_%d", (int)getpid(), ++seq);
    snprintf(cmd, sizeof(cmd), "CREATE DATABASE %s", name);
    test_pg_admin(cmd);
    snprintf(url, n, "%.*s/%s", (int)(tail - admin), admin, name);
}

static inline void test_pg_drop(const char *name)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "DROP DATABASE %s WITH (FORCE)", name);
    test_pg_admin(cmd);
}

#endif
