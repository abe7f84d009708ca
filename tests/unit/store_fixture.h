/*
 * store_fixture.h - the fixture of the store's conformance tests (R21):
 * each test gets a store of its own, a file in a fresh temp dir (SQLite)
 * or a fresh database on the server of WHARF_TEST_PG (PostgreSQL), as the
 * group running says (g_pg). A test file includes it once, after
 * testutil.h, runs its list of tests as a "(sqlite)" group, sets g_pg and
 * runs it again as a "(postgresql)" group.
 */
#ifndef WHARF_STORE_FIXTURE_H
#define WHARF_STORE_FIXTURE_H

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <unistd.h>

#include "store/partner_store.h"
#include "store/store.h"

struct fx {
    char dir[256];
    char db[300];               /* a file, or a postgresql:// URL */
    char pgname[64];            /* the PostgreSQL database, "" on SQLite */
    struct store *st;
};

/* The group running: 0 SQLite, 1 PostgreSQL. */
static int g_pg;

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/wharf.db", f->dir);
    if (g_pg)
        test_pg_fresh(f->db, sizeof(f->db), f->pgname);
    struct error err = {0};
    f->st = store_open(f->db, &err);
    if (f->st == NULL)
        fail_msg("store_open: %s", err.msg);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->st);
    if (f->pgname[0])
        test_pg_drop(f->pgname);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

/* Plain SQL on a connection of the test's own (the same text runs on
 * both: no ?N or $N, integers and '...' literals only). */
static inline void raw_exec(struct fx *f, const char *sql)
{
    if (g_pg) {
        PGconn *c = PQconnectdb(f->db);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("%s: %s", sql, PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        return;
    }
    sqlite3 *db = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
}

/* PostgreSQL's SKIP LOCKED: run probe(arg) in a thread (a store call on
 * a connection of its own, which sets *done when it ends) while another
 * session holds one row of db (sql: a SELECT ... FOR UPDATE with $1 =
 * id). 1 when the probe was still waiting after 5 s (it ends once the row
 * is let go), 0 when it ended first. */
static inline int fx_pg_waits_on_row(const char *db, const char *sql,
                              const char *id, void *(*probe)(void *),
                              void *arg, atomic_int *done)
{
    PGconn *c = PQconnectdb(db);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQclear(PQexec(c, "BEGIN"));
    const char *v[1] = { id };
    PGresult *r = PQexecParams(c, sql, 1, NULL, v, NULL, NULL, 0);
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, probe, arg), 0);
    for (int i = 0; i < 500 && !atomic_load(done); i++)
        usleep(10000);
    int waited = !atomic_load(done);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    pthread_join(th, NULL);
    return waited;
}

/* An asynchronous or synchronous MDN received for message id, as the AS2
 * sender keeps it (tests of receipts kept with an outcome). */
static inline struct store_receipt fx_mdn_received(const char *id)
{
    return (struct store_receipt){ .message_id = (char *)id,
        .direction = (char *)"received", .at = time_now_ms(),
        .as2_message_id = (char *)"<mdn-1@b>",
        .original_message_id = (char *)"<msg-1@a>",
        .headers = (char *)"Content-Type: multipart/report\r\n",
        .body = (unsigned char *)"MDN", .len = 3 };
}

/* Fails unless message id has n receipts (n 1: fx_mdn_received's). */
static inline void fx_expect_receipts(struct store *st, const char *id,
                                      size_t n)
{
    struct store_receipt *got = NULL;
    size_t k = 0;
    struct error err = {0};
    if (store_receipts_list(st, id, 1, &got, &k, &err) != 0)
        fail_msg("store_receipts_list: %s", err.msg);
    assert_int_equal(k, n);
    if (n == 1) {
        assert_string_equal(got[0].direction, "received");
        assert_string_equal(got[0].as2_message_id, "<mdn-1@b>");
        assert_int_equal(got[0].len, 3);
        assert_memory_equal(got[0].body, "MDN", 3);
    }
    store_receipts_free(got, k);
}

#endif
