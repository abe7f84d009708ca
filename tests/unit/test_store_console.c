/*
 * test_store_console.c - what the console and the posture report read
 * from the store (console_store.h, posture_store.h), below the API: the
 * message search filters by state, connector (source or a hop), a list of
 * connectors, text (file name, AS2 Message-ID of a receipt, id prefix,
 * ASCII case ignored, % and _ taken literally), time, and pages by key;
 * messages per hour by outcome (M8); counts of hops and messages, the
 * newest audit entry of some actions, the newest backup (and a backups
 * table of another shape refused), whether a table exists.
 *
 * Store-level conformance tests: each runs against SQLite and against a
 * real PostgreSQL server (R21; scripts/run-unit.sh starts one and names it
 * in WHARF_TEST_PG; without it the PostgreSQL group fails). Rows no store
 * function writes on both backends yet (receipts, audit entries, backups,
 * a message's last change) are put in with plain SQL on a connection of
 * the test's own. Both areas only read: the r21 test is a second node
 * seeing what another node wrote.
 */
#include "testutil.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include "store/console_store.h"
#include "store/posture_store.h"
#include "store/store.h"
#include "util/id.h"

/* ---- fixture ---------------------------------------------------------------- */

#include "store_fixture.h"

#define MUST(call, err) do { \
        if ((call) != 0) \
            fail_msg("%s: %s", #call, (err).msg); \
    } while (0)

/* ---- the messages searched ------------------------------------------------------ */

#define T0 1767225600000LL          /* 2026-01-01T00:00Z */
#define HOUR 3600000LL
#define ID(n) "01900000-0000-7000-8000-00000000000" #n

/* M1..M5, created an hour apart from T0:
 *   M1 inbox    "Invoice_1.EDI"  -> acme-out     sent     T0 + 10 min
 *   M2 inbox    "100%_done.csv"  -> globex-out   sent     T0 + 70 min
 *   M3 sftp-in  "100x_done.csv"  -> acme-out     failed   T0 + 75 min
 *   M4 as2-acme "order.xml"      -> archive      refused  T0 + 130 min
 *                (a receipt with AS2 Message-ID <AbC-123@acme>)
 *   M5 inbox    "report.txt"     -> archive      queued */
static void five_messages(struct fx *f)
{
    static const struct {
        const char *id, *source, *filename, *next;
    } m[5] = {
        { ID(1), "inbox", "Invoice_1.EDI", "acme-out" },
        { ID(2), "inbox", "100%_done.csv", "globex-out" },
        { ID(3), "sftp-in", "100x_done.csv", "acme-out" },
        { ID(4), "as2-acme", "order.xml", "archive" },
        { ID(5), "inbox", "report.txt", "archive" },
    };
    struct error err = {0};
    for (int i = 0; i < 5; i++) {
        struct store_message msg;
        memset(&msg, 0, sizeof(msg));
        snprintf(msg.id, sizeof(msg.id), "%s", m[i].id);
        msg.created_at = T0 + i * HOUR;
        msg.source = (char *)m[i].source;
        msg.filename = (char *)m[i].filename;
        msg.size = 42;
        msg.sha256 = (char *)"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b"
                             "822cd15d6c15b0f00a08";
        msg.payload_path = (char *)"payloads/20260101/x.wpay";
        const char *next[1] = { m[i].next };
        struct store_new it = { .msg = &msg, .next = next, .nnext = 1 };
        MUST(store_intake(f->st, &it, 1, &err), err);
    }
    char sql[256];
    static const struct { int n; const char *state; long long at; } ch[4] = {
        { 1, "sent", T0 + 10 * 60000 }, { 2, "sent", T0 + 70 * 60000 },
        { 3, "failed", T0 + 75 * 60000 }, { 4, "refused", T0 + 130 * 60000 },
    };
    for (int i = 0; i < 4; i++) {
        snprintf(sql, sizeof(sql), "UPDATE messages SET state = '%s',"
                 " updated_at = %lld WHERE id = '01900000-0000-7000-8000-"
                 "00000000000%d'", ch[i].state, ch[i].at, ch[i].n);
        raw_exec(f, sql);
    }
    raw_exec(f, "INSERT INTO receipts(message_id, direction, at,"
             " as2_message_id, original_message_id, headers, body) VALUES("
             "'" ID(4) "', 'out', 1, '<AbC-123@acme>', NULL, '', '')");
}

/* The ids the search found, as "n,n,..." (the last digit of each). */
static const char *found(struct fx *f, const struct store_message_query *q)
{
    static char out[64];
    struct store_message *m = NULL;
    size_t n = 0;
    struct error err = {0};
    MUST(store_message_search(f->st, q, &m, &n, &err), err);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%c",
                 i ? "," : "", m[i].id[ID_LEN - 1]);
    store_messages_free(m, n);
    return out;
}

static void test_m8_search_filters(void **state)
{
    struct fx *f = *state;
    five_messages(f);
    struct store_message_query q;
#define Q(...) (memset(&q, 0, sizeof(q)), q = (struct store_message_query) \
                { __VA_ARGS__ }, found(f, &q))
    assert_string_equal(Q(.limit = 0), "5,4,3,2,1");
    assert_string_equal(Q(.state = "sent"), "2,1");
    assert_string_equal(Q(.state = ""), "5,4,3,2,1");   /* "" no filter */
    /* a connector: its source or one of its hops */
    assert_string_equal(Q(.connector = "acme-out"), "3,1");
    assert_string_equal(Q(.connector = "inbox"), "5,2,1");
    assert_string_equal(Q(.connector = "inbox", .state = "sent"), "2,1");
    /* a partner's connectors */
    assert_string_equal(Q(.connectors_json = "[\"globex-out\", \"sftp-in\"]"),
                        "3,2");
    assert_string_equal(Q(.connectors_json = "[]"), "");
    /* text: a part of the file name, ASCII case ignored */
    assert_string_equal(Q(.text = "invoice"), "1");
    assert_string_equal(Q(.text = "EDI"), "1");
    assert_string_equal(Q(.text = "100"), "3,2");
    /* % and _ are characters, not wildcards */
    assert_string_equal(Q(.text = "0%_"), "2");
    assert_string_equal(Q(.text = "1_0"), "");
    /* the AS2 Message-ID of a receipt */
    assert_string_equal(Q(.text = "abc-123@"), "4");
    /* an id prefix (the text, or id_text when given) */
    assert_string_equal(Q(.text = ID(4)), "4");
    assert_string_equal(Q(.text = "zzz", .id_text = "01900000-0000-7000"),
                        "5,4,3,2,1");
    assert_string_equal(Q(.text = "8000-00000000000"), "");    /* prefix */
    /* partners matching the text: their connectors' messages too */
    assert_string_equal(Q(.text = "zzz",
                          .text_connectors_json = "[\"as2-acme\"]"), "4");
    /* created in [since, until) */
    assert_string_equal(Q(.since_ms = T0 + HOUR, .until_ms = T0 + 3 * HOUR),
                        "3,2");
    assert_string_equal(Q(.until_ms = T0 + 1), "1");
}

static void test_m8_search_pages_by_key(void **state)
{
    struct fx *f = *state;
    five_messages(f);
    struct store_message_query q;
    assert_string_equal(Q(.limit = 2), "5,4");
    assert_string_equal(Q(.limit = 2, .before_id = ID(4)), "3,2");
    assert_string_equal(Q(.limit = 2, .before_id = ID(2)), "1");
    assert_string_equal(Q(.limit = 2, .before_id = ID(1)), "");
    assert_string_equal(Q(.limit = 2, .before_id = ID(4),
                          .connector = "inbox"), "2,1");
#undef Q
}

static void test_m8_messages_per_hour_by_outcome(void **state)
{
    struct fx *f = *state;
    five_messages(f);
    int64_t c[4][3];
    struct error err = {0};
    MUST(store_message_hourly(f->st, T0, 4, c, &err), err);
    static const int64_t want[4][3] = {
        { 1, 0, 0 }, { 1, 1, 0 }, { 0, 0, 1 }, { 0, 0, 0 },
    };
    for (int h = 0; h < 4; h++)
        for (int k = 0; k < 3; k++)
            if (c[h][k] != want[h][k])
                fail_msg("hour %d, outcome %d: %lld, not %lld", h, k,
                         (long long)c[h][k], (long long)want[h][k]);
    /* from an hour later: M1 is before it, the rest moves up one */
    MUST(store_message_hourly(f->st, T0 + HOUR, 2, c, &err), err);
    assert_int_equal(c[0][0], 1);
    assert_int_equal(c[0][1], 1);
    assert_int_equal(c[1][2], 1);
}

/* ---- posture ---------------------------------------------------------------------- */

/* "name/state=n;..." of counts. */
static const char *counts_text(struct store_count *c, size_t n)
{
    static char out[512];
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s/%s=%lld;",
                 c[i].name ? c[i].name : "-", c[i].state,
                 (long long)c[i].n);
    return out;
}

static void test_m8_posture_counts(void **state)
{
    struct fx *f = *state;
    struct store_count *c = NULL;
    size_t n = 0;
    struct error err = {0};
    MUST(store_message_counts(f->st, &c, &n, &err), err);
    assert_int_equal(n, 0);
    store_counts_free(c, n);
    five_messages(f);
    MUST(store_message_counts(f->st, &c, &n, &err), err);
    assert_string_equal(counts_text(c, n),
                        "-/failed=1;-/queued=1;-/refused=1;-/sent=2;");
    store_counts_free(c, n);
    MUST(store_hop_counts_by_connector(f->st, &c, &n, &err), err);
    assert_string_equal(counts_text(c, n),
                        "acme-out/queued=2;archive/queued=2;"
                        "as2-acme/received=1;globex-out/queued=1;"
                        "inbox/received=3;sftp-in/received=1;");
    store_counts_free(c, n);
}

static void test_m8_posture_newest_audit_entry(void **state)
{
    struct fx *f = *state;
    int64_t at = -1;
    char *action = NULL;
    struct error err = {0};
    assert_int_equal(store_audit_newest(f->st, "[\"key.rotate\"]", &at,
                                        &action, &err), 1);
    assert_null(action);
    raw_exec(f, "INSERT INTO audit(seq, at, actor, action, prev_hash, hash)"
             " VALUES(1, 100, 'cli', 'key.rotate', 'x', 'a'),"
             " (2, 200, 'cli', 'user.add', 'a', 'b'),"
             " (3, 300, 'cli', 'vault.rekey', 'b', 'c'),"
             " (4, 250, 'cli', 'user.add', 'c', 'd')");
    assert_int_equal(store_audit_newest(f->st, "[\"key.rotate\"]", &at,
                                        &action, &err), 0);
    assert_int_equal(at, 100);
    assert_string_equal(action, "key.rotate");
    free(action);
    /* the newest by sequence, among the actions named */
    assert_int_equal(store_audit_newest(f->st, "[\"key.rotate\","
                                        " \"vault.rekey\"]", &at, &action,
                                        &err), 0);
    assert_int_equal(at, 300);
    assert_string_equal(action, "vault.rekey");
    free(action);
    assert_int_equal(store_audit_newest(f->st, "[\"user.add\"]", &at,
                                        &action, &err), 0);
    assert_int_equal(at, 250);
    free(action);
    assert_int_equal(store_audit_newest(f->st, "[\"no.such\"]", &at,
                                        &action, &err), 1);
}

static void test_m8_posture_tables_and_newest_backup(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    assert_int_equal(store_table_exists(f->st, "backups", &err), 1);
    assert_int_equal(store_table_exists(f->st, "alerts", &err), 1);
    assert_int_equal(store_table_exists(f->st, "no_such_table", &err), 0);
    /* the database's own catalog is not one of Wharf's tables */
    assert_int_equal(store_table_exists(f->st, "pg_class", &err), 0);
    assert_int_equal(store_table_exists(f->st, "sqlite_master", &err), 0);
    /* an index is not a table */
    assert_int_equal(store_table_exists(f->st, "backups_newest", &err), 0);

    int64_t at = -1;
    char *where = NULL;
    assert_int_equal(store_backup_newest(f->st, &at, &where, &err), 1);
    assert_null(where);
    raw_exec(f, "INSERT INTO backups(started_at, finished_at, ok, location,"
             " kind) VALUES(90, 100, 1, '/b/1', 'full'),"
             " (290, 300, 1, '/b/3', 'full'), (390, 400, 0, '/b/4', 'full'),"
             " (190, 200, 1, NULL, 'full')");
    assert_int_equal(store_backup_newest(f->st, &at, &where, &err), 0);
    assert_int_equal(at, 300);
    assert_string_equal(where, "/b/3");
    free(where);
    where = NULL;
    /* a table of another shape: refused, not misread */
    raw_exec(f, "ALTER TABLE backups DROP COLUMN location");
    assert_int_equal(store_backup_newest(f->st, &at, &where, &err), -1);
    assert_non_null(strstr(err.msg, "does not have the shape"));
    assert_null(where);
}

/* ---- R21 ------------------------------------------------------------------------------ */

/* What one node took in, another node's console finds and counts at once
 * (read only: there is nothing here two nodes could take twice). */
static void test_r21_console_of_one_node_sees_another_nodes_messages(
        void **state)
{
    struct fx *f = *state;
    five_messages(f);
    struct error err = {0};
    struct store *node2 = store_open(f->db, &err);
    if (node2 == NULL)
        fail_msg("store_open: %s", err.msg);
    struct store_message msg;
    memset(&msg, 0, sizeof(msg));
    snprintf(msg.id, sizeof(msg.id), "%s", ID(6));
    msg.created_at = T0 + 5 * HOUR;
    msg.source = (char *)"sftp-in";
    msg.filename = (char *)"from-node2.csv";
    msg.payload_path = (char *)"payloads/20260101/y.wpay";
    const char *next[1] = { "acme-out" };
    struct store_new it = { .msg = &msg, .next = next, .nnext = 1 };
    MUST(store_intake(node2, &it, 1, &err), err);
    store_close(node2);
    struct store_message_query q = { .text = "NODE2" };
    assert_string_equal(found(f, &q), "6");
    struct store_count *c = NULL;
    size_t n = 0;
    MUST(store_message_counts(f->st, &c, &n, &err), err);
    assert_string_equal(counts_text(c, n),
                        "-/failed=1;-/queued=2;-/refused=1;-/sent=2;");
    store_counts_free(c, n);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_m8_search_filters),
        T(test_m8_search_pages_by_key),
        T(test_m8_messages_per_hour_by_outcome),
        T(test_m8_posture_counts),
        T(test_m8_posture_newest_audit_entry),
        T(test_m8_posture_tables_and_newest_backup),
        T(test_r21_console_of_one_node_sees_another_nodes_messages),
    };
#undef T
    int failed = cmocka_run_group_tests_name("store_console (sqlite)", tests,
                                             NULL, NULL);
    g_pg = 1;
    failed += cmocka_run_group_tests_name("store_console (postgresql)",
                                          tests, NULL, NULL);
    return failed;
}
