/*
 * test_store_jobs.c - three store headers at the store level, against
 * SQLite and a real PostgreSQL 15 (R21; scripts/run-unit.sh starts one and
 * names it in WHARF_TEST_PG; without it the PostgreSQL group fails, it is
 * not skipped):
 *   - job_store.h: a job's life (add, lease, finish done / retry / failed,
 *     waits and input, a lost lease, resend), one active job per message,
 *     connector and kind, a job's outcome settling its waiting hop (M2, M4);
 *   - retention_store.h: purge candidates by age, a legal hold keeps a
 *     message out, purge_pending survives until cleared (R9);
 *   - sealed_store.h: every sealed value listed and rewritten in batches,
 *     compare-and-set (R15).
 * Tests named r21 are about several connections (nodes) sharing one
 * database at once. test_jobs.c and test_rotate.c test the same headers
 * through a whole data dir (struct wharf), on SQLite only.
 *
 * Each test gets its own database: a file in a fresh temp dir, or a fresh
 * PostgreSQL database.
 */
#include "testutil.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/job_store.h"
#include "store/partner_store.h"
#include "store/retention_store.h"
#include "store/sealed_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/syncgroup.h"

#define MUST(call, e) do { if ((call) != 0) fail_msg("%s: %s", #call, \
                                                   (e).msg); } while (0)

/* ---- fixture ---------------------------------------------------------------- */

#include "store_fixture.h"

/* ---- raw SQL on the test's database (set-up and checks only) ---------------- */

/* Run sql (sqlite_sql on SQLite, pg_sql on PostgreSQL) on a connection of
 * its own; the first column of the first row as an integer, or 0. */
static int64_t raw(struct fx *f, const char *sqlite_sql, const char *pg_sql)
{
    int64_t v = 0;
    if (f->pgname[0]) {
        PGconn *c = PQconnectdb(f->db);
        PGresult *r = PQexec(c, pg_sql);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
            fail_msg("%s: %s", pg_sql, PQerrorMessage(c));
        if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
        return v;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, sqlite_sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sqlite_sql, sqlite3_errmsg(db));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        fail_msg("%s: %s", sqlite_sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

#define RAW(f, sql) raw((f), (sql), (sql))

/* ---- messages, hops, jobs ------------------------------------------------------ */

static const char *const ID1 = "01900000-0000-7000-8000-000000000001";
static const char *const ID2 = "01900000-0000-7000-8000-000000000002";
static const char *const ID3 = "01900000-0000-7000-8000-000000000003";
static const char *const ID4 = "01900000-0000-7000-8000-000000000004";

#define DAY_MS (24LL * 3600 * 1000)

/* Intake message id from `source`, created at `created`, going on to
 * next[0..nnext). */
static void intake_at(struct store *st, const char *id, const char *source,
                      int64_t created, const char *const *next,
                      size_t nnext)
{
    static char path[64];
    struct store_message m;
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%s", id);
    snprintf(path, sizeof(path), "payloads/%.8s.wpay", id + 28);
    m.created_at = created;
    m.source = (char *)source;
    m.filename = (char *)"a.edi";
    m.size = 100;
    m.sha256 = (char *)"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    m.payload_path = path;
    struct store_new it = { .msg = &m, .next = next, .nnext = nnext };
    struct error err = {0};
    MUST(store_intake(st, &it, 1, &err), err);
    assert_int_equal(it.duplicate, 0);
}

static void intake1(struct store *st, const char *id)
{
    const char *next[] = { "outbox" };
    intake_at(st, id, "inbox", time_now_ms(), next, 1);
}

/* Add a job of msgid at connector "as2", kind "mdn", with data "sealed-ID"
 * (hop_id 0 unless given). Its id in id. */
static void job_add(struct store *st, const char *msgid, int64_t hop_id,
                    const char *kind, int waiting, int64_t window_ms,
                    char id[ID_LEN + 1])
{
    char data[64];
    snprintf(data, sizeof(data), "sealed-%s", msgid);
    id_new(id);
    struct store_job_new j = { .id = id, .message_id = msgid,
        .hop_id = hop_id, .connector = "as2", .kind = kind,
        .waiting = waiting, .window_ms = window_ms,
        .data = (const unsigned char *)data, .data_len = strlen(data),
        .level = "info", .text = "job added" };
    struct error err = {0};
    MUST(store_job_add(st, &j, &err), err);
}

/* Lease due jobs now for owner; how many. */
static size_t lease(struct store *st, const char *owner, size_t max,
                    struct store_job **out)
{
    size_t n = 0;
    struct error err = {0};
    MUST(store_job_lease(st, owner, time_now_ms(), 60000, max, out, &n, &err),
         err);
    return n;
}

/* Finish job j (leased by owner) to state. */
static void finish(struct store *st, const struct store_job *j,
                   const char *owner, const char *state, int attempts,
                   int64_t due_at, const char *error,
                   const struct store_outcome *hop, int *skipped,
                   int *settled)
{
    struct store_job_outcome o = { .id = j->id, .message_id = j->message_id,
        .hop_id = j->hop_id, .owner = owner, .state = state,
        .attempts = attempts, .waits = 0, .due_at = due_at, .error = error,
        .level = "info", .text = state, .hop = hop };
    struct error err = {0};
    MUST(store_job_finish(st, &o, skipped, settled, &err), err);
}

/* The only job of msgid (caller frees with store_jobs_free(j, 1)). */
static struct store_job *the_job(struct store *st, const char *msgid)
{
    struct store_job *j = NULL;
    size_t n = 0;
    struct error err = {0};
    MUST(store_message_jobs(st, msgid, &j, &n, &err), err);
    assert_int_equal(n, 1);
    return j;
}

static void counts(struct store *st, int64_t pending, int64_t processing,
                   int64_t failed)
{
    int64_t p, r, fl;
    struct error err = {0};
    MUST(store_job_counts(st, &p, &r, &fl, &err), err);
    assert_int_equal(p, pending);
    assert_int_equal(r, processing);
    assert_int_equal(fl, failed);
}

static size_t events_with(struct store *st, const char *id,
                          const char *needle)
{
    struct store_event *e = NULL;
    size_t n = 0, hits = 0;
    struct error err = {0};
    MUST(store_message_events(st, id, &e, &n, &err), err);
    for (size_t i = 0; i < n; i++)
        hits += strstr(e[i].text, needle) != NULL;
    store_events_free(e, n);
    return hits;
}

static const char *msg_state(struct store *st, const char *id)
{
    static char state[32];
    struct store_message m;
    struct error err = {0};
    assert_int_equal(store_message_get(st, id, &m, &err), 0);
    snprintf(state, sizeof(state), "%s", m.state);
    store_message_clear(&m);
    return state;
}

/* Lease the one due hop of the store and finish it with result. */
static int64_t hop_through(struct store *st, enum hop_result result)
{
    struct store_hop *h = NULL;
    size_t n = 0;
    struct error err = {0};
    MUST(store_hop_lease(st, "w", time_now_ms(), 60000, 1, &h, &n,
                         &err), err);
    assert_int_equal(n, 1);
    int64_t id = h[0].id;
    struct store_outcome o = { .hop_id = id, .message_id = h[0].message_id,
        .connector = h[0].connector, .owner = "w", .result = result,
        .attempts = 1, .next_at = time_now_ms() + 3600 * 1000,
        .receipt = result == HOP_WAIT ? "waiting for the MDN" : NULL };
    size_t skipped = 0;
    MUST(store_hop_finish(st, &o, 1, &skipped, &err), err);
    assert_int_equal(skipped, 0);
    store_hops_free(h, n);
    return id;
}

/* ---- jobs ---------------------------------------------------------------------- */

/* A job is kept, leased by one worker at a time with its sealed data, and
 * its outcome committed with its event. */
static void test_m2_job_added_leased_once_and_done(void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    char id[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn", 0, 0, id);
    counts(f->st, 1, 0, 0);
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    assert_string_equal(j->id, id);
    assert_string_equal(j->message_id, ID1);
    assert_string_equal(j->connector, "as2");
    assert_string_equal(j->kind, "mdn");
    assert_int_equal(j->data_len, strlen("sealed-") + strlen(ID1));
    assert_memory_equal(j->data, "sealed-", 7);
    assert_null(j->input);
    counts(f->st, 0, 1, 0);
    struct store_job *again = NULL;
    assert_int_equal(lease(f->st, "w2", 10, &again), 0);
    store_jobs_free(again, 0);
    int skipped = -1, settled = -1;
    finish(f->st, j, "w1", "done", 0, time_now_ms(), NULL, NULL, &skipped,
           &settled);
    assert_int_equal(skipped, 0);
    assert_int_equal(settled, 0);
    store_jobs_free(j, 1);
    counts(f->st, 0, 0, 0);
    j = the_job(f->st, ID1);
    assert_string_equal(j->state, "done");
    assert_null(j->data);           /* listings carry no blobs */
    store_jobs_free(j, 1);
    assert_int_equal(events_with(f->st, ID1, "job added"), 1);
    assert_int_equal(events_with(f->st, ID1, "done"), 1);
}

/* A failed run is retried at its due time; given up, the job is failed
 * and a resend of its message queues it again. */
static void test_m4_job_retried_failed_then_resent(void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    hop_through(f->st, HOP_SENT);
    char id[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn", 0, 3600 * 1000, id);
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    int skipped, settled;
    finish(f->st, j, "w1", "queued", 1, time_now_ms() + 3600 * 1000,
           "partner down", NULL, &skipped, &settled);
    store_jobs_free(j, 1);
    assert_int_equal(lease(f->st, "w1", 10, &j), 0);      /* not due yet */
    store_jobs_free(j, 0);
    j = the_job(f->st, ID1);
    assert_string_equal(j->state, "queued");
    assert_int_equal(j->attempts, 1);
    assert_string_equal(j->last_error, "partner down");
    store_jobs_free(j, 1);
    /* due again: leased, then given up */
    finish(f->st, &(struct store_job){ .hop_id = 0 }, "nobody", "done", 0, 0,
           NULL, NULL, &skipped, &settled);
    assert_int_equal(skipped, 1);       /* no such lease */
    struct error err = {0};
    struct store_job *all = NULL;
    size_t n = 0;
    MUST(store_job_lease(f->st, "w1", time_now_ms() + 7200 * 1000, 60000, 10,
                         &all, &n, &err), err);
    assert_int_equal(n, 1);
    finish(f->st, all, "w1", "failed", 2, 0, "gave up", NULL, &skipped,
           &settled);
    store_jobs_free(all, n);
    counts(f->st, 0, 0, 1);
    int hops = -1, jobs = -1;
    MUST(store_message_resend(f->st, ID1, "alice", NULL, 0, &hops, &jobs,
                              &err), err);
    assert_int_equal(jobs, 1);
    assert_int_equal(hops, 0);
    j = the_job(f->st, ID1);
    assert_string_equal(j->state, "queued");
    assert_int_equal(j->attempts, 0);
    assert_null(j->last_error);
    assert_true(j->give_up_at > time_now_ms());
    store_jobs_free(j, 1);
    counts(f->st, 1, 0, 0);
}

/* A resend queues a failed job again only when no job of its message,
 * connector and kind is active: the active one stays the only one. */
static void test_m4_resend_leaves_a_failed_job_with_an_active_successor(
    void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    hop_through(f->st, HOP_SENT);
    char a[ID_LEN + 1], b[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn", 0, 0, a);
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    int skipped, settled;
    finish(f->st, j, "w1", "failed", 1, 0, "gave up", NULL, &skipped,
           &settled);
    store_jobs_free(j, 1);
    job_add(f->st, ID1, 0, "mdn", 0, 0, b);
    int hops = -1, jobs = -1;
    struct error err = {0};
    MUST(store_message_resend(f->st, ID1, "alice", NULL, 0, &hops, &jobs,
                              &err), err);
    assert_int_equal(jobs, 0);
    char found[ID_LEN + 1];
    assert_int_equal(store_job_active(f->st, ID1, "as2", "mdn", found, &err),
                     1);
    assert_string_equal(found, b);
    counts(f->st, 1, 0, 1);
}

/* One active job per message, connector and kind: adding replaces it;
 * cancel drops a queued or waiting one, never one being run. */
static void test_m4_one_active_job_per_message_connector_kind(void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    char a[ID_LEN + 1], b[ID_LEN + 1], c[ID_LEN + 1], found[ID_LEN + 1];
    struct error err = {0};
    job_add(f->st, ID1, 0, "mdn", 0, 0, a);
    job_add(f->st, ID1, 0, "mdn", 1, 0, b);
    job_add(f->st, ID1, 0, "mdn-wait", 0, 0, c);
    struct store_job *all = NULL;
    size_t n = 0;
    MUST(store_message_jobs(f->st, ID1, &all, &n, &err), err);
    assert_int_equal(n, 2);
    store_jobs_free(all, n);
    assert_int_equal(store_job_active(f->st, ID1, "as2", "mdn", found, &err),
                     1);
    assert_string_equal(found, b);
    assert_int_equal(store_job_active(f->st, ID1, "as2", "other", NULL, &err),
                     0);
    assert_int_equal(store_job_cancel(f->st, ID1, "as2", "mdn", &err), 1);
    assert_int_equal(store_job_cancel(f->st, ID1, "as2", "mdn", &err), 0);
    assert_int_equal(store_job_active(f->st, ID1, "as2", "mdn", NULL, &err),
                     0);
    /* the one being run stays */
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    assert_string_equal(j->id, c);
    store_jobs_free(j, 1);
    assert_int_equal(store_job_cancel(f->st, ID1, "as2", "mdn-wait", &err),
                     0);
    assert_int_equal(store_job_active(f->st, ID1, "as2", "mdn-wait", found,
                                      &err), 1);
    assert_string_equal(found, c);
}

/* A waiting job runs at its give-up time or as soon as its input arrives;
 * input for a job being run is refused. */
static void test_m4_waiting_job_runs_when_its_input_arrives(void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    char id[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn-wait", 1, 3600 * 1000, id);
    struct store_job *j = the_job(f->st, ID1);
    assert_string_equal(j->state, "waiting");
    assert_true(j->give_up_at > time_now_ms());
    assert_int_equal(j->due_at, j->give_up_at);
    store_jobs_free(j, 1);
    counts(f->st, 1, 0, 0);
    assert_int_equal(lease(f->st, "w1", 10, &j), 0);
    store_jobs_free(j, 0);
    struct error err = {0};
    const unsigned char in[] = { 0, 1, 2, 0xff };
    assert_int_equal(store_job_input(f->st, id, in, sizeof(in), &err), 1);
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    assert_int_equal(j->input_len, sizeof(in));
    assert_memory_equal(j->input, in, sizeof(in));
    store_jobs_free(j, 1);
    assert_int_equal(store_job_input(f->st, id, in, 1, &err), 0);
    char other[ID_LEN + 1];
    id_new(other);
    assert_int_equal(store_job_input(f->st, other, in, 1, &err), 0);
}

/* M2 (group commit): the input of a waiting job (an asynchronous MDN
 * arriving) and the cancel of a wait commit in the database's group sync,
 * like every other write of the message path: not alone, holding SQLite's
 * write lock across a sync of their own while other writers sleep in the
 * busy handler. A sync ticket of the database's group is the evidence. */
static void test_m2_job_input_and_cancel_share_the_group_sync(void **state)
{
    struct fx *f = *state;
    struct stat sb;
    assert_int_equal(stat(f->db, &sb), 0);
    struct sync_group *g = sync_group_of(sb.st_dev, sb.st_ino);
    assert_non_null(g);
    intake1(f->st, ID1);
    char id[ID_LEN + 1], other[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn-wait", 1, 3600 * 1000, id);
    job_add(f->st, ID1, 0, "mdn-other", 1, 3600 * 1000, other);
    struct error err = {0};
    const unsigned char in[] = { 1, 2, 3 };
    unsigned long long before = sync_group_tickets(g);
    assert_int_equal(store_job_input(f->st, id, in, sizeof(in), &err), 1);
    assert_int_equal(sync_group_tickets(g) - before, 1);
    before = sync_group_tickets(g);
    assert_int_equal(store_job_cancel(f->st, ID1, "as2", "mdn-other", &err),
                     1);
    assert_int_equal(sync_group_tickets(g) - before, 1);
    /* what they report is unchanged: nothing more to give or cancel */
    assert_int_equal(store_job_cancel(f->st, ID1, "as2", "mdn-other", &err),
                     0);
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    assert_int_equal(store_job_input(f->st, id, in, 1, &err), 0);
    store_jobs_free(j, 1);
}

/* The MDN a job checked is recorded with the job's new state, in its
 * transaction: both or neither (a lease lost records neither; the job
 * runs again and records it then). */
static void test_m4_job_outcome_keeps_its_mdn_both_or_neither(void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    char id[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn-wait", 0, 3600 * 1000, id);
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    struct store_receipt r = fx_mdn_received(ID1);
    struct store_job_outcome o = { .id = j->id, .message_id = ID1,
        .owner = "w2", .state = "done", .level = "info", .text = "done",
        .kept = &r };
    int skipped = 0, settled = 0;
    struct error err = {0};
    MUST(store_job_finish(f->st, &o, &skipped, &settled, &err), err);
    assert_int_equal(skipped, 1);
    fx_expect_receipts(f->st, ID1, 0);
    o.owner = "w1";
    MUST(store_job_finish(f->st, &o, &skipped, &settled, &err), err);
    assert_int_equal(skipped, 0);
    fx_expect_receipts(f->st, ID1, 1);
    store_jobs_free(j, 1);
}

/* A lease that expired goes to the next worker; the first one's late
 * outcome is skipped. */
static void test_m2_expired_job_lease_taken_again_late_outcome_skipped(
    void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    char id[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn", 0, 0, id);
    struct error err = {0};
    struct store_job *j = NULL;
    size_t n = 0;
    MUST(store_job_lease(f->st, "w1", time_now_ms() - 120000, 60000, 10, &j,
                         &n, &err), err);
    store_jobs_free(j, n);
    assert_int_equal(n, 0);             /* not due then */
    MUST(store_job_lease(f->st, "w1", time_now_ms(), 1, 10, &j, &n, &err),
         err);
    assert_int_equal(n, 1);
    usleep(5000);
    struct store_job *k = NULL;
    assert_int_equal(lease(f->st, "w2", 10, &k), 1);
    assert_string_equal(k->id, id);
    int skipped, settled;
    finish(f->st, j, "w1", "done", 0, 0, NULL, NULL, &skipped, &settled);
    assert_int_equal(skipped, 1);
    finish(f->st, k, "w2", "done", 0, 0, NULL, NULL, &skipped, &settled);
    assert_int_equal(skipped, 0);
    store_jobs_free(j, n);
    store_jobs_free(k, 1);
    j = the_job(f->st, ID1);
    assert_string_equal(j->state, "done");
    store_jobs_free(j, 1);
}

/* A job of a hop is not run while that hop is being delivered; its
 * outcome settles the hop only while the hop waits. */
static void test_m4_job_settles_its_waiting_hop(void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    struct error err = {0};
    struct store_hop *h = NULL;
    size_t n = 0;
    MUST(store_hop_lease(f->st, "w", time_now_ms(), 60000, 1, &h, &n,
                         &err), err);
    assert_int_equal(n, 1);
    int64_t hop = h[0].id;
    char id[ID_LEN + 1];
    job_add(f->st, ID1, hop, "mdn-wait", 0, 0, id);
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 0);  /* hop in delivery */
    store_jobs_free(j, 0);
    struct store_outcome wait = { .hop_id = hop, .message_id = ID1,
        .connector = "outbox", .owner = "w", .result = HOP_WAIT,
        .attempts = 1, .next_at = time_now_ms() + 3600 * 1000,
        .receipt = "waiting for the MDN" };
    MUST(store_hop_finish(f->st, &wait, 1, NULL, &err), err);
    store_hops_free(h, n);
    assert_string_equal(msg_state(f->st, ID1), "retrying");
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    assert_int_equal(j->hop_id, hop);
    assert_int_equal(j->hop_attempts, 1);
    const char *next[] = { "archive" };
    struct store_outcome sent = { .hop_id = hop, .message_id = ID1,
        .connector = "outbox", .result = HOP_SENT, .attempts = 1,
        .receipt = "MDN processed", .next = next, .nnext = 1 };
    int skipped = -1, settled = -1;
    finish(f->st, j, "w1", "done", 0, 0, NULL, &sent, &skipped, &settled);
    store_jobs_free(j, 1);
    assert_int_equal(skipped, 0);
    assert_int_equal(settled, 1);
    MUST(store_message_hops(f->st, ID1, &h, &n, &err), err);
    assert_int_equal(n, 3);             /* received, outbox, archive */
    assert_string_equal(h[1].state, "sent");
    assert_string_equal(h[1].receipt, "MDN processed");
    assert_string_equal(h[2].connector, "archive");
    assert_string_equal(h[2].state, "queued");
    store_hops_free(h, n);
    assert_string_equal(msg_state(f->st, ID1), "queued");
    assert_int_equal(events_with(f->st, ID1, "queued for archive"), 1);
    /* the hop does not wait any more: a second job's outcome leaves it */
    job_add(f->st, ID1, hop, "mdn-wait", 0, 0, id);
    assert_int_equal(lease(f->st, "w1", 10, &j), 1);
    sent.result = HOP_FAILED;
    sent.error = "late";
    finish(f->st, j, "w1", "expired", 0, 0, NULL, &sent, &skipped, &settled);
    store_jobs_free(j, 1);
    assert_int_equal(skipped, 0);
    assert_int_equal(settled, 0);
    assert_string_equal(msg_state(f->st, ID1), "queued");
}

/* The outcomes of a batch of jobs commit in one transaction: each as
 * store_job_finish would (a lost lease skipped alone); all or none. */
static void test_m4_job_outcomes_of_a_batch_commit_together(void **state)
{
    struct fx *f = *state;
    const char *ids[] = { ID1, ID2, ID3 };
    char id[ID_LEN + 1];
    for (size_t i = 0; i < 3; i++) {
        intake1(f->st, ids[i]);
        job_add(f->st, ids[i], 0, "mdn", 0, 0, id);
    }
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w1", 10, &j), 3);
    struct store_job_outcome o[3];
    for (size_t i = 0; i < 3; i++)
        o[i] = (struct store_job_outcome){ .id = j[i].id,
            .message_id = j[i].message_id, .owner = "w1", .state = "done",
            .due_at = time_now_ms(), .level = "info", .text = "batch done" };
    /* one bad outcome: nothing of the batch is recorded */
    o[2].state = NULL;
    int skipped[3] = { 7, 7, 7 }, settled[3] = { 7, 7, 7 };
    struct error err = {0};
    assert_int_equal(store_job_finish_all(f->st, o, 3, skipped, settled,
                                          &err), -1);
    assert_true(err.msg[0] != '\0');
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(skipped[i] + settled[i], 0);
    counts(f->st, 0, 3, 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(events_with(f->st, ids[i], "batch done"), 0);
    /* again: one lease lost (another owner), one retried, one done */
    o[2].state = "done";
    o[1].state = "queued";
    o[1].attempts = 1;
    o[1].due_at = time_now_ms() + 3600 * 1000;
    o[1].error = "partner down";
    o[0].owner = "w2";
    MUST(store_job_finish_all(f->st, o, 3, skipped, settled, &err), err);
    assert_int_equal(skipped[0], 1);
    assert_int_equal(skipped[1] + skipped[2], 0);
    assert_int_equal(settled[0] + settled[1] + settled[2], 0);
    counts(f->st, 1, 1, 0);
    const char *want[] = { "processing", "queued", "done" };
    for (size_t i = 0; i < 3; i++) {
        struct store_job *k = the_job(f->st, j[i].message_id);
        assert_string_equal(k->state, want[i]);
        store_jobs_free(k, 1);
        assert_int_equal(events_with(f->st, j[i].message_id, "batch done"),
                         i == 0 ? 0 : 1);
    }
    store_jobs_free(j, 3);
}

/* ---- retention ------------------------------------------------------------------ */

static size_t candidates(struct store *st, const char *source, int64_t before,
                         struct store_expired **e)
{
    size_t n = 0;
    struct error err = {0};
    MUST(store_purge_candidates(st, source, before, 100, e, &n, &err), err);
    return n;
}

/* Old messages in a final state with nothing in flight are candidates,
 * oldest first; a held one, one with a queued hop or an active job, and a
 * young one are not. */
static void test_r09_purge_candidates_by_age_hold_and_flight(void **state)
{
    struct fx *f = *state;
    int64_t now = time_now_ms();
    const char *next[] = { "outbox" };
    intake_at(f->st, ID1, "inbox", now - 10 * DAY_MS, NULL, 0);
    intake_at(f->st, ID2, "sftp", now - 9 * DAY_MS, NULL, 0);
    intake_at(f->st, ID3, "inbox", now - 8 * DAY_MS, next, 1);
    intake_at(f->st, ID4, "inbox", now, NULL, 0);
    struct store_expired *e = NULL;
    int64_t before = now - DAY_MS;
    assert_int_equal(candidates(f->st, NULL, before, &e), 2);
    assert_string_equal(e[0].id, ID1);
    assert_string_equal(e[0].state, "received");
    assert_non_null(e[0].payload_path);
    assert_int_equal(e[0].size, 100);
    assert_string_equal(e[1].id, ID2);
    store_expired_free(e, 2);
    assert_int_equal(candidates(f->st, "sftp", before, &e), 1);
    assert_string_equal(e[0].id, ID2);
    store_expired_free(e, 1);
    int64_t count, bytes, held;
    struct error err = {0};
    MUST(store_purge_count(f->st, NULL, before, &count, &bytes, &err), err);
    assert_int_equal(count, 2);
    assert_int_equal(bytes, 200);
    /* a hold keeps ID1 out */
    assert_int_equal(store_hold_set(f->st, ID1, "alice", "case 7", now, &err),
                     0);
    assert_int_equal(store_hold_set(f->st, ID1, "bob", NULL, now, &err), 2);
    assert_int_equal(store_hold_set(f->st, "no-such", "bob", NULL, now, &err),
                     1);
    struct store_hold h;
    assert_int_equal(store_hold_get(f->st, ID1, &h, &err), 0);
    assert_string_equal(h.actor, "alice");
    assert_string_equal(h.reason, "case 7");
    assert_int_equal(h.at, now);
    store_hold_clear(&h);
    assert_int_equal(store_hold_get(f->st, ID2, &h, &err), 1);
    MUST(store_hold_count(f->st, &count, &err), err);
    assert_int_equal(count, 1);
    MUST(store_purge_held(f->st, NULL, before, &held, &err), err);
    assert_int_equal(held, 1);
    MUST(store_purge_held(f->st, "sftp", before, &held, &err), err);
    assert_int_equal(held, 0);
    assert_int_equal(candidates(f->st, NULL, before, &e), 1);
    assert_string_equal(e[0].id, ID2);
    store_expired_free(e, 1);
    /* an active job keeps ID2 out too */
    char id[ID_LEN + 1];
    job_add(f->st, ID2, 0, "mdn", 0, 0, id);
    assert_int_equal(candidates(f->st, NULL, before, &e), 0);
    store_expired_free(e, 0);
    struct error e2 = {0};
    assert_int_equal(store_job_cancel(f->st, ID2, "as2", "mdn", &e2), 1);
    assert_int_equal(store_hold_lift(f->st, ID1, &err), 0);
    assert_int_equal(store_hold_lift(f->st, ID1, &err), 1);
    assert_int_equal(candidates(f->st, NULL, before, &e), 2);
    store_expired_free(e, 2);
    /* sources, and the messages of a set of connectors with their holds */
    char **names = NULL;
    size_t nn = 0;
    MUST(store_message_sources(f->st, &names, &nn, &err), err);
    assert_int_equal(nn, 2);
    assert_string_equal(names[0], "inbox");
    assert_string_equal(names[1], "sftp");
    store_names_free(names, nn);
    assert_int_equal(store_hold_set(f->st, ID3, "alice", NULL, now, &err), 0);
    int *hd = NULL;
    MUST(store_messages_of(f->st, "[\"outbox\", \"sftp\"]", &e, &hd, &nn,
                           &err), err);
    assert_int_equal(nn, 2);
    assert_string_equal(e[0].id, ID2);
    assert_int_equal(hd[0], 0);
    assert_string_equal(e[1].id, ID3);
    assert_int_equal(hd[1], 1);
    store_expired_free(e, nn);
    free(hd);
}

/* The purge deletes a candidate's rows and lists its payload file in
 * purge_pending, which stays until store_purge_done; a message that is no
 * longer a candidate (held meanwhile, in flight) is left. */
static void test_r09_purge_deletes_rows_pending_survives_until_done(
    void **state)
{
    struct fx *f = *state;
    int64_t now = time_now_ms();
    const char *next[] = { "outbox" };
    intake_at(f->st, ID1, "inbox", now - 10 * DAY_MS, NULL, 0);
    intake_at(f->st, ID2, "inbox", now - 10 * DAY_MS, NULL, 0);
    intake_at(f->st, ID3, "inbox", now - 10 * DAY_MS, next, 1);
    struct error err = {0};
    assert_int_equal(store_hold_set(f->st, ID2, "alice", NULL, now, &err), 0);
    const char *ids[] = { ID1, ID2, ID3, "no-such" };
    int gone[4] = { 9, 9, 9, 9 };
    MUST(store_purge_delete(f->st, ids, 4, now, gone, &err), err);
    assert_int_equal(gone[0], 1);
    assert_int_equal(gone[1], 0);
    assert_int_equal(gone[2], 0);
    assert_int_equal(gone[3], 0);
    struct store_message m;
    assert_int_equal(store_message_get(f->st, ID1, &m, &err), 1);
    store_message_clear(&m);
    assert_int_equal(RAW(f, "SELECT COUNT(*) FROM events WHERE message_id ="
                         " '01900000-0000-7000-8000-000000000001'"), 0);
    assert_int_equal(RAW(f, "SELECT COUNT(*) FROM hops WHERE message_id ="
                         " '01900000-0000-7000-8000-000000000001'"), 0);
    assert_string_equal(msg_state(f->st, ID2), "received");
    assert_string_equal(msg_state(f->st, ID3), "queued");
    for (int round = 0; round < 2; round++) {
        struct store_pending *p = NULL;
        size_t n = 0;
        MUST(store_purge_pending(f->st, 10, &p, &n, &err), err);
        assert_int_equal(n, 1);
        assert_string_equal(p[0].id, ID1);
        assert_string_equal(p[0].payload_path, "payloads/00000001.wpay");
        store_pending_free(p, n);
    }
    MUST(store_purge_done(f->st, ID1, &err), err);
    struct store_pending *p = NULL;
    size_t n = 9;
    MUST(store_purge_pending(f->st, 10, &p, &n, &err), err);
    assert_int_equal(n, 0);
    store_pending_free(p, n);
    /* a second purge of the same id finds nothing */
    MUST(store_purge_delete(f->st, ids, 1, now, gone, &err), err);
    assert_int_equal(gone[0], 0);
}

/* ---- sealed values ---------------------------------------------------------------- */

/* A connector secret, a profile key, a TOTP seed, a job's data and input. */
static void sealed_fill(struct fx *f, size_t nsecrets)
{
    struct store_connector conns[] = { { .name = (char *)"a",
        .type = (char *)"sftp", .config = (char *)"{}" } };
    struct store_secret sec[16];
    char names[16][16];
    unsigned char blob[16][8];
    assert_true(nsecrets <= 16);
    for (size_t i = 0; i < nsecrets; i++) {
        snprintf(names[i], sizeof(names[i]), "key_%02zu", i);
        memset(blob[i], (int)i + 1, sizeof(blob[i]));
        sec[i] = (struct store_secret){ .connector = (char *)"a",
            .name = names[i], .blob = blob[i], .len = sizeof(blob[i]) };
    }
    unsigned char der[4] = { 0x30, 1, 2, 3 }, key[3] = { 9, 9, 9 };
    struct store_cert cert = { .owner = (char *)"", .subject = (char *)"CN=x",
        .der = der, .der_len = sizeof(der), .key = key,
        .key_len = sizeof(key) };
    snprintf(cert.id, sizeof(cert.id), "%064d", 7);
    struct store_flow fl = { .conns = conns, .nconns = 1, .secrets = sec,
                             .nsecrets = nsecrets, .certs = &cert,
                             .ncerts = 1 };
    struct error err = {0};
    MUST(store_flow_put(f->st, &fl, &err), err);
    raw(f, "INSERT INTO users(name, role, created_at, updated_at, totp_sealed)"
        " VALUES('alice', 'admin', 0, 0, X'0a0b')",
        "INSERT INTO users(name, role, created_at, updated_at, totp_sealed)"
        " VALUES('alice', 'admin', 0, 0, '\\x0a0b')");
    intake1(f->st, ID1);
    char id[ID_LEN + 1];
    job_add(f->st, ID1, 0, "mdn-wait", 1, 0, id);
    const unsigned char in[] = { 5, 5 };
    assert_int_equal(store_job_input(f->st, id, in, sizeof(in), &err), 1);
}

/* fn of store_sealed_rewrite: the old blob with one byte (arg) added. */
static int reseal(void *arg, const struct store_sealed *row,
                  unsigned char **blob, size_t *len, struct error *err)
{
    (void)err;
    *blob = malloc(row->len + 1);
    assert_non_null(*blob);
    memcpy(*blob, row->blob, row->len);
    (*blob)[row->len] = *(const unsigned char *)arg;
    *len = row->len + 1;
    return 1;
}

static int reseal_fails(void *arg, const struct store_sealed *row,
                        unsigned char **blob, size_t *len, struct error *err)
{
    if (strcmp(row->name, "key_03") == 0)
        return error_set(err, "vault says no");
    return reseal(arg, row, blob, len, err);
}

static int reseal_none(void *arg, const struct store_sealed *row,
                       unsigned char **blob, size_t *len, struct error *err)
{
    (void)arg; (void)row; (void)blob; (void)len; (void)err;
    return 0;
}

static size_t sealed_list(struct store *st, enum store_sealed_kind kind,
                          struct store_sealed **rows)
{
    size_t n = 0;
    struct error err = {0};
    MUST(store_sealed_list(st, kind, rows, &n, &err), err);
    return n;
}

/* Every kind is listed with its owner and name; a rotation rewrites them
 * in batches; a value changed since it was listed is left alone; a batch
 * that fails writes nothing. */
static void test_r15_sealed_values_listed_and_rewritten_in_batches(
    void **state)
{
    struct fx *f = *state;
    sealed_fill(f, 7);
    struct store_sealed *rows = NULL;
    assert_int_equal(sealed_list(f->st, STORE_SEALED_PROFILE_KEY, &rows), 1);
    assert_string_equal(rows[0].owner, "");
    assert_int_equal(rows[0].len, 3);
    store_sealed_free(rows, 1);
    assert_int_equal(sealed_list(f->st, STORE_SEALED_TOTP, &rows), 1);
    assert_string_equal(rows[0].owner, "alice");
    assert_memory_equal(rows[0].blob, "\x0a\x0b", 2);
    unsigned char mark = 'T';
    size_t replaced = 0;
    struct error err = {0};
    MUST(store_sealed_rewrite(f->st, rows, 1, reseal, &mark, &replaced, &err),
         err);
    assert_int_equal(replaced, 1);
    store_sealed_free(rows, 1);
    assert_int_equal(sealed_list(f->st, STORE_SEALED_TOTP, &rows), 1);
    assert_memory_equal(rows[0].blob, "\x0a\x0bT", 3);
    store_sealed_free(rows, 1);
    assert_int_equal(sealed_list(f->st, STORE_SEALED_JOB_DATA, &rows), 1);
    assert_string_equal(rows[0].owner, "as2");
    store_sealed_free(rows, 1);
    assert_int_equal(sealed_list(f->st, STORE_SEALED_JOB_INPUT, &rows), 1);
    MUST(store_sealed_rewrite(f->st, rows, 1, reseal, &mark, &replaced, &err),
         err);
    assert_int_equal(replaced, 1);
    store_sealed_free(rows, 1);
    struct store_job *j = NULL;
    assert_int_equal(lease(f->st, "w", 10, &j), 1);
    assert_memory_equal(j->input, "\x05\x05T", 3);
    store_jobs_free(j, 1);
    /* connector secrets, in batches of 3; a stale row is not counted */
    size_t n = sealed_list(f->st, STORE_SEALED_CONNECTOR, &rows);
    assert_int_equal(n, 7);
    assert_string_equal(rows[0].owner, "a");
    assert_string_equal(rows[0].name, "key_00");
    assert_string_equal(rows[6].name, "key_06");
    unsigned char other = 'X';
    MUST(store_sealed_rewrite(f->st, &rows[5], 1, reseal, &other, &replaced,
                              &err), err);
    assert_int_equal(replaced, 1);
    MUST(store_sealed_rewrite(f->st, rows, 3, reseal_none, &mark, &replaced,
                              &err), err);
    assert_int_equal(replaced, 0);
    assert_int_equal(store_sealed_rewrite(f->st, &rows[3], 3, reseal_fails,
                                          &mark, &replaced, &err), -1);
    assert_int_equal(replaced, 0);
    assert_non_null(strstr(err.msg, "vault says no"));
    size_t total = 0;
    for (size_t i = 0; i < n; i += 3) {
        size_t batch = n - i < 3 ? n - i : 3;
        MUST(store_sealed_rewrite(f->st, &rows[i], batch, reseal, &mark,
                                  &replaced, &err), err);
        total += replaced;
    }
    assert_int_equal(total, 6);         /* key_05 changed meanwhile */
    store_sealed_free(rows, n);
    n = sealed_list(f->st, STORE_SEALED_CONNECTOR, &rows);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rows[i].len, 9);
        assert_int_equal(rows[i].blob[8], i == 5 ? 'X' : 'T');
        assert_int_equal(rows[i].blob[0], (int)i + 1);
    }
    store_sealed_free(rows, n);
    assert_int_equal(store_sealed_list(f->st, STORE_SEALED_KINDS, &rows, &n,
                                       &err), -1);
}

/* ---- R21: several nodes at once ----------------------------------------------------- */

#define NODES 3
#define SHARED 240

struct node_run {
    const char *db;
    char owner[16];
    pthread_barrier_t *go;
    int unit;                   /* how many at a time */
    size_t n;
    char ids[SHARED][ID_LEN + 1];
    int64_t count;
    char err[300];
};

/* A node: its own connection, leasing `unit` jobs at a time until none is
 * due. */
static void *lease_jobs(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    pthread_barrier_wait(r->go);
    for (int done = st == NULL; !done;) {
        struct store_job *j = NULL;
        size_t n = 0;
        if (store_job_lease(st, r->owner, time_now_ms(), 600000,
                            (size_t)r->unit, &j, &n, &err) != 0)
            break;
        for (size_t i = 0; i < n && r->n < SHARED; i++)
            memcpy(r->ids[r->n++], j[i].id, ID_LEN + 1);
        store_jobs_free(j, n);
        done = n == 0;
    }
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* count old messages in a final state, with one due job each when jobs. */
static void messages_many(struct store *st, size_t count, int jobs)
{
    struct store_message *m = calloc(count, sizeof(*m));
    struct store_new *it = calloc(count, sizeof(*it));
    assert_true(m && it);
    for (size_t i = 0; i < count; i++) {
        snprintf(m[i].id, sizeof(m[i].id), "01900000-0000-7000-8000-%012zu",
                 i);
        m[i].created_at = time_now_ms() - 10 * DAY_MS;
        m[i].source = (char *)"inbox";
        m[i].payload_path = (char *)"payloads/x.wpay";
        it[i] = (struct store_new){ .msg = &m[i] };
    }
    struct error err = {0};
    MUST(store_intake(st, it, count, &err), err);
    for (size_t i = 0; jobs && i < count; i++) {
        char id[ID_LEN + 1];
        job_add(st, m[i].id, 0, "mdn", 0, 0, id);
    }
    free(m);
    free(it);
}

static void run_nodes(struct node_run *runs, int nodes, void *(*fn)(void *))
{
    pthread_t th[NODES];
    pthread_barrier_t go;
    assert_true(nodes <= NODES);
    pthread_barrier_init(&go, NULL, (unsigned)nodes);
    for (int i = 0; i < nodes; i++) {
        runs[i].go = &go;
        snprintf(runs[i].owner, sizeof(runs[i].owner), "node%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, fn, &runs[i]), 0);
    }
    for (int i = 0; i < nodes; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < nodes; i++)
        if (runs[i].err[0])
            fail_msg("%s: %s", runs[i].owner, runs[i].err);
}

/* Three nodes lease the same due jobs at once: every job is leased, none
 * by two nodes (FOR UPDATE SKIP LOCKED on PostgreSQL). */
static void test_r21_nodes_leasing_jobs_together_never_share_one(
    void **state)
{
    struct fx *f = *state;
    messages_many(f->st, SHARED, 1);
    static struct node_run runs[NODES];
    memset(runs, 0, sizeof(runs));
    for (int i = 0; i < NODES; i++) {
        runs[i].db = f->db;
        runs[i].unit = 4;
    }
    run_nodes(runs, NODES, lease_jobs);
    static char all[SHARED * NODES][ID_LEN + 1];
    size_t total = 0;
    for (int i = 0; i < NODES; i++) {
        memcpy(all + total, runs[i].ids, runs[i].n * sizeof(all[0]));
        total += runs[i].n;
    }
    qsort(all, total, sizeof(all[0]), cmp_id);
    for (size_t i = 1; i < total; i++)
        if (strcmp(all[i], all[i - 1]) == 0)
            fail_msg("job %s leased by two nodes", all[i]);
    assert_int_equal(total, SHARED);
    counts(f->st, 0, SHARED, 0);
}

/* A node adding, over and over, the job of the same message, connector
 * and kind. */
static void *add_jobs(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    pthread_barrier_wait(r->go);
    for (int i = 0; st && i < r->unit; i++) {
        char id[ID_LEN + 1];
        id_new(id);
        struct store_job_new j = { .id = id, .message_id = ID1,
            .connector = "as2", .kind = "mdn",
            .data = (const unsigned char *)"d", .data_len = 1 };
        if (store_job_add(st, &j, &err) != 0)
            break;
        r->count++;
    }
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Nodes adding the job of one message, connector and kind at once: each
 * add replaces the one before, none fails, one stays active (the message
 * row is locked first on PostgreSQL). */
static void test_r21_nodes_adding_one_job_together_keep_one_active(
    void **state)
{
    struct fx *f = *state;
    intake1(f->st, ID1);
    static struct node_run runs[NODES];
    memset(runs, 0, sizeof(runs));
    for (int i = 0; i < NODES; i++) {
        runs[i].db = f->db;
        runs[i].unit = 40;
    }
    run_nodes(runs, NODES, add_jobs);
    for (int i = 0; i < NODES; i++)
        assert_int_equal(runs[i].count, 40);
    struct store_job *j = the_job(f->st, ID1);
    assert_string_equal(j->state, "queued");
    store_jobs_free(j, 1);
}

/* A node committing the outcomes of jobs (each settling its waiting hop)
 * one at a time on its own connection. */
struct finish_run {
    struct node_run node;
    struct store_job_outcome o[SHARED];
    struct store_outcome hop[SHARED];
    size_t no;
};

static void *finish_jobs(void *arg)
{
    struct finish_run *fr = arg;
    struct node_run *r = &fr->node;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    pthread_barrier_wait(r->go);
    for (size_t i = 0; st && i < fr->no; i++) {
        int skipped = 0, settled = 0;
        if (store_job_finish(st, &fr->o[i], &skipped, &settled, &err) != 0)
            break;
        if (skipped || !settled) {
            error_set(&err, "job %s: skipped %d settled %d", fr->o[i].id,
                      skipped, settled);
            break;
        }
    }
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes finish, at once, the jobs of the two waiting hops of each
 * message, each job settling its hop sent: the message's state is computed
 * from both hops, never from a view missing one (the job's message row is
 * locked first on PostgreSQL). */
static void test_r21_nodes_settling_two_hops_of_a_message_agree_on_its_state(
    void **state)
{
    struct fx *f = *state;
    enum { MSGS = 60 };
    const char *next[] = { "a", "b" };
    struct store_message *m = calloc(MSGS, sizeof(*m));
    struct store_new *it = calloc(MSGS, sizeof(*it));
    assert_true(m && it);
    for (size_t i = 0; i < MSGS; i++) {
        snprintf(m[i].id, sizeof(m[i].id), "01900000-0000-7000-8000-%012zu",
                 i);
        m[i].created_at = time_now_ms();
        m[i].source = (char *)"inbox";
        it[i] = (struct store_new){ .msg = &m[i], .next = next, .nnext = 2 };
    }
    struct error err = {0};
    MUST(store_intake(f->st, it, MSGS, &err), err);
    free(m);
    free(it);
    /* every hop delivered, waiting for its MDN, with a job that waits */
    struct store_hop *h = NULL;
    size_t n = 0;
    MUST(store_hop_lease(f->st, "w", time_now_ms(), 600000, 2 * MSGS, &h, &n,
                         &err), err);
    assert_int_equal(n, 2 * MSGS);
    for (size_t i = 0; i < n; i++) {
        struct store_outcome o = { .hop_id = h[i].id,
            .message_id = h[i].message_id, .connector = h[i].connector,
            .owner = "w", .result = HOP_WAIT, .attempts = 1,
            .next_at = time_now_ms() + 3600 * 1000 };
        MUST(store_hop_finish(f->st, &o, 1, NULL, &err), err);
        char id[ID_LEN + 1];
        job_add(f->st, h[i].message_id, h[i].id, h[i].connector, 0, 0, id);
    }
    store_hops_free(h, n);
    struct store_job *j = NULL;
    MUST(store_job_lease(f->st, "w", time_now_ms(), 600000, 4 * MSGS, &j, &n,
                         &err), err);
    assert_int_equal(n, 2 * MSGS);
    static struct finish_run runs[2];
    memset(runs, 0, sizeof(runs));
    for (size_t i = 0; i < n; i++) {
        struct finish_run *fr = &runs[strcmp(j[i].kind, "a") != 0];
        size_t k = fr->no++;
        fr->hop[k] = (struct store_outcome){ .hop_id = j[i].hop_id,
            .message_id = j[i].message_id, .connector = j[i].kind,
            .result = HOP_SENT, .attempts = 1, .receipt = "MDN processed" };
        fr->o[k] = (struct store_job_outcome){ .id = j[i].id,
            .message_id = j[i].message_id, .hop_id = j[i].hop_id,
            .owner = "w", .state = "done", .hop = &fr->hop[k] };
    }
    assert_int_equal(runs[0].no, MSGS);
    assert_int_equal(runs[1].no, MSGS);
    pthread_t th[2];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    for (int i = 0; i < 2; i++) {
        runs[i].node.db = f->db;
        runs[i].node.go = &go;
        assert_int_equal(pthread_create(&th[i], NULL, finish_jobs, &runs[i]),
                         0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < 2; i++)
        if (runs[i].node.err[0])
            fail_msg("node %d: %s", i, runs[i].node.err);
    store_jobs_free(j, n);
    struct store_message *all = NULL;
    MUST(store_message_list(f->st, NULL, 1000, 0, &all, &n, &err), err);
    assert_int_equal(n, MSGS);
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].state, "sent") != 0)
            fail_msg("message %s is %s with both hops sent", all[i].id,
                     all[i].state);
    store_messages_free(all, n);
}

/* A node purging what it listed as candidates before the others purged
 * (all nodes list first, then purge at once), in batches of `unit`. */
static void *purge_all(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    struct store_expired *e = NULL;
    size_t n = 0;
    int rc = st ? store_purge_candidates(st, NULL, time_now_ms(), SHARED, &e,
                                         &n, &err) : -1;
    pthread_barrier_wait(r->go);
    for (size_t i = 0; rc == 0 && i < n; i += (size_t)r->unit) {
        const char *ids[SHARED];
        int gone[SHARED];
        size_t batch = n - i < (size_t)r->unit ? n - i : (size_t)r->unit;
        for (size_t k = 0; k < batch; k++)
            ids[k] = e[i + k].id;
        rc = store_purge_delete(st, ids, batch, time_now_ms(), gone, &err);
        for (size_t k = 0; rc == 0 && k < batch; k++)
            if (gone[k] && r->n < SHARED)
                memcpy(r->ids[r->n++], ids[k], ID_LEN + 1);
    }
    store_expired_free(e, n);
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes purge the same messages at once: each message is deleted (and
 * reported gone) by one of them, and its payload file is listed in
 * purge_pending once (the purge locks its message rows on PostgreSQL). */
static void test_r21_nodes_purging_together_delete_each_message_once(
    void **state)
{
    struct fx *f = *state;
    messages_many(f->st, SHARED, 0);
    static struct node_run runs[2];
    memset(runs, 0, sizeof(runs));
    for (int i = 0; i < 2; i++) {
        runs[i].db = f->db;
        runs[i].unit = 12;
    }
    run_nodes(runs, 2, purge_all);
    static char all[SHARED * 2][ID_LEN + 1];
    size_t total = 0;
    for (int i = 0; i < 2; i++) {
        memcpy(all + total, runs[i].ids, runs[i].n * sizeof(all[0]));
        total += runs[i].n;
    }
    qsort(all, total, sizeof(all[0]), cmp_id);
    for (size_t i = 1; i < total; i++)
        if (strcmp(all[i], all[i - 1]) == 0)
            fail_msg("message %s purged by both nodes", all[i]);
    assert_int_equal(total, SHARED);
    assert_int_equal(RAW(f, "SELECT COUNT(*) FROM messages"), 0);
    struct store_pending *p = NULL;
    size_t n = 0;
    struct error err = {0};
    MUST(store_purge_pending(f->st, 10 * SHARED, &p, &n, &err), err);
    assert_int_equal(n, SHARED);
    store_pending_free(p, n);
}

/* A node placing a legal hold on each message of messages_many, one at a
 * time: result[i] is store_hold_set's (0 placed, 1 the message is gone). */
struct hold_run {
    struct node_run node;
    int result[SHARED];
};

static void *hold_each(void *arg)
{
    struct hold_run *h = arg;
    struct node_run *r = &h->node;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    pthread_barrier_wait(r->go);
    for (size_t i = 0; st && i < SHARED; i++) {
        char id[ID_LEN + 1];
        snprintf(id, sizeof(id), "01900000-0000-7000-8000-%012zu", i);
        h->result[i] = store_hold_set(st, id, "alice", "case 9",
                                      time_now_ms(), &err);
        if (h->result[i] < 0)
            break;
    }
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

static void *hold_or_purge(void *arg)
{
    struct node_run *r = arg;
    return r->unit ? purge_all(arg) : hold_each(arg);
}

/* One node places legal holds while another purges the same messages:
 * a hold placed is never lost to the purge (the message stays, held), and
 * a message the purge took is one the hold found gone (the hold takes the
 * message row FOR SHARE on PostgreSQL, the purge FOR UPDATE). */
static void test_r21_hold_and_purge_together_never_lose_a_held_message(
    void **state)
{
    struct fx *f = *state;
    messages_many(f->st, SHARED, 0);
    static struct hold_run holds;
    static struct node_run runs[2];
    memset(&holds, 0, sizeof(holds));
    memset(runs, 0, sizeof(runs));
    runs[0].db = f->db;
    runs[0].unit = 6;
    holds.node.db = f->db;
    pthread_t th[2];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    runs[0].go = holds.node.go = &go;
    assert_int_equal(pthread_create(&th[0], NULL, hold_or_purge, &runs[0]),
                     0);
    assert_int_equal(pthread_create(&th[1], NULL, hold_or_purge, &holds), 0);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    pthread_barrier_destroy(&go);
    if (runs[0].err[0] || holds.node.err[0])
        fail_msg("purge: %s / hold: %s", runs[0].err, holds.node.err);
    size_t held = 0, purged = 0;
    for (size_t i = 0; i < SHARED; i++) {
        char id[ID_LEN + 1];
        snprintf(id, sizeof(id), "01900000-0000-7000-8000-%012zu", i);
        struct store_message m;
        struct error err = {0};
        int exists = store_message_get(f->st, id, &m, &err) == 0;
        store_message_clear(&m);
        if (holds.result[i] == 0 && !exists)
            fail_msg("message %s was held, then purged", id);
        if (holds.result[i] == 1 && exists)
            fail_msg("message %s is there, yet its hold found it gone", id);
        held += holds.result[i] == 0;
        purged += !exists;
    }
    assert_int_equal(held + purged, SHARED);
    assert_int_equal(runs[0].n, purged);
}

/* A node re-sealing, in one batch, the connector secrets it listed before
 * the other node wrote (both list first, then rewrite at once). */
static void *rotate_all(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    struct store_sealed *rows = NULL;
    size_t n = 0, replaced = 0;
    unsigned char mark = (unsigned char)('A' + r->owner[4] - '0');
    int rc = st ? store_sealed_list(st, STORE_SEALED_CONNECTOR, &rows, &n,
                                    &err) : -1;
    pthread_barrier_wait(r->go);
    if (rc == 0 && store_sealed_rewrite(st, rows, n, reseal, &mark,
                                        &replaced, &err) == 0)
        r->count = (int64_t)replaced;
    store_sealed_free(rows, n);
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes rotate the same sealed values at once: each value is rewritten
 * once, by one of them (compare-and-set on the listed blob). */
static void test_r21_nodes_rotating_together_rewrite_each_value_once(
    void **state)
{
    struct fx *f = *state;
    sealed_fill(f, 16);
    static struct node_run runs[2];
    memset(runs, 0, sizeof(runs));
    for (int i = 0; i < 2; i++)
        runs[i].db = f->db;
    run_nodes(runs, 2, rotate_all);
    assert_int_equal(runs[0].count + runs[1].count, 16);
    struct store_sealed *rows = NULL;
    size_t n = sealed_list(f->st, STORE_SEALED_CONNECTOR, &rows);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rows[i].len, 9);
    store_sealed_free(rows, n);
}

/* ---- R21: PostgreSQL only ------------------------------------------------------------ */

struct lease_probe {
    const char *db;
    size_t n;
    char first[ID_LEN + 1];
    char err[300];
    atomic_int done;
};

static void *lease_probe(void *arg)
{
    struct lease_probe *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    struct store_job *j = NULL;
    if (st && store_job_lease(st, "node2", time_now_ms(), 60000, 10, &j,
                              &r->n, &err) == 0 && r->n > 0)
        memcpy(r->first, j[0].id, ID_LEN + 1);
    store_jobs_free(j, r->n);
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    atomic_store(&r->done, 1);
    return NULL;
}

/* While another node holds a due job's row (it is taking it), a lease
 * skips that job instead of waiting for it: SKIP LOCKED. */
static void test_r21_pg_job_lease_skips_a_job_another_node_is_taking(
    void **state)
{
    struct fx *f = *state;
    char a[ID_LEN + 1], b[ID_LEN + 1];
    intake1(f->st, ID1);
    intake1(f->st, ID2);
    job_add(f->st, ID1, 0, "mdn", 0, 0, a);
    usleep(2000);
    job_add(f->st, ID2, 0, "mdn", 0, 0, b);
    struct lease_probe probe = { .db = f->db };
    if (fx_pg_waits_on_row(f->db, "SELECT id FROM jobs WHERE id = $1 FOR"
                           " UPDATE", a, lease_probe, &probe, &probe.done))
        fail_msg("the lease waited for a job another node was taking");
    if (probe.err[0])
        fail_msg("lease: %s", probe.err);
    assert_int_equal(probe.n, 1);
    assert_string_equal(probe.first, b);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
#define CONFORMANCE \
        T(test_m2_job_added_leased_once_and_done), \
        T(test_m4_job_retried_failed_then_resent), \
        T(test_m4_one_active_job_per_message_connector_kind), \
        T(test_m4_waiting_job_runs_when_its_input_arrives), \
        T(test_m4_job_outcome_keeps_its_mdn_both_or_neither), \
        T(test_m2_expired_job_lease_taken_again_late_outcome_skipped), \
        T(test_m4_job_settles_its_waiting_hop), \
        T(test_m4_job_outcomes_of_a_batch_commit_together), \
        T(test_r09_purge_candidates_by_age_hold_and_flight), \
        T(test_r09_purge_deletes_rows_pending_survives_until_done), \
        T(test_r15_sealed_values_listed_and_rewritten_in_batches), \
        T(test_r21_nodes_leasing_jobs_together_never_share_one), \
        T(test_r21_nodes_adding_one_job_together_keep_one_active), \
        T(test_r21_nodes_settling_two_hops_of_a_message_agree_on_its_state), \
        T(test_r21_nodes_purging_together_delete_each_message_once), \
        T(test_r21_hold_and_purge_together_never_lose_a_held_message), \
        T(test_r21_nodes_rotating_together_rewrite_each_value_once), \
        T(test_m4_resend_leaves_a_failed_job_with_an_active_successor)
    const struct CMUnitTest sqlite[] = {
        CONFORMANCE,
        T(test_m2_job_input_and_cancel_share_the_group_sync),
    };
    const struct CMUnitTest postgresql[] = {
        CONFORMANCE,
        T(test_r21_pg_job_lease_skips_a_job_another_node_is_taking),
    };
#undef CONFORMANCE
#undef T
    int failed = cmocka_run_group_tests_name("store jobs (sqlite)", sqlite,
                                             NULL, NULL);
    g_pg = 1;
    failed += cmocka_run_group_tests_name("store jobs (postgresql)",
                                          postgresql, NULL, NULL);
    return failed;
}
