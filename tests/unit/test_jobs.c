/*
 * test_jobs.c - durable jobs of messages and the connector environment's
 * state (connectors/env.h, core/jobs.c, core/env.c, store/job_store.h) over
 * a real data dir made by wharf_init:
 *
 *   - a job is durable (it outlives its store connection, i.e. a restart),
 *     leased by one worker at a time, given back when its lease expires or
 *     serve starts (M2);
 *   - the runner retries a failing job by the kind's own retry policy (its
 *     max_attempts, not the connector's), then fails it with an event per
 *     run in the message's history; a waiting run (WH_AGAIN) counts no
 *     attempt; a job whose hop is being delivered is not run; a waiting
 *     job runs when its input arrives, with the input unsealed (M4: the
 *     asynchronous MDN);
 *   - a job settles the hop that waits for it: sent, or a failed attempt
 *     by the connector's own retry policy (M4: sent again);
 *   - a failed job is queued again by a resend of its message;
 *   - a job's data and input are sealed, or kept in the clear only for a
 *     kind whose type says so (R15: a value in the clear is refused for
 *     any other kind);
 *   - state values are sealed (the stored blob is not the value), typed
 *     get/put/drop/names work per connector (R8: OAuth tokens).
 *
 * The runner is driven with a connector of a test type whose job kind is
 * scripted (statuses in order), inside a flow made by hand.
 */
#include "testutil.h"
#include "wharf_fixture.h"

#include <sqlite3.h>
#include <unistd.h>

#include "connectors/connector.h"
#include "core/env.h"
#include "core/flow.h"
#include "core/jobs.h"
#include "core/wharf.h"
#include "security/retention.h"
#include "store/job_store.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/secret.h"

/* ---- a scripted job kind -------------------------------------------------------- */

static struct {
    enum wh_status st[8];       /* what each run returns, in order */
    enum conn_job_hop hop[8];
    int runs;
    char data[64], input[64];   /* what the last run got */
} script;

static enum wh_status scripted_run(struct connector *c, struct conn_job *j)
{
    (void)c;
    int k = script.runs < 8 ? script.runs : 7;
    script.runs++;
    snprintf(script.data, sizeof(script.data), "%.*s",
             j->data ? (int)secret_len(j->data) : 0,
             j->data ? (const char *)secret_data(j->data) : "");
    snprintf(script.input, sizeof(script.input), "%.*s",
             j->input ? (int)secret_len(j->input) : 0,
             j->input ? (const char *)secret_data(j->input) : "");
    j->hop = script.hop[k];
    if (script.st[k] == WH_AGAIN) {
        j->again_at = time_now_ms();
        if (j->waits == 0)
            snprintf(j->note, sizeof(j->note), "not yet: said once");
    } else if (script.st[k] == WH_OK) {
        snprintf(j->receipt, sizeof(j->receipt), "confirmed");
    } else {
        error_set(&j->err, "scripted failure %d", script.runs);
    }
    return script.st[k];
}

static const struct conn_job_type TEST_JOBS[] = {
    { "test.job", "a scripted job", { 3, 1, 2 }, scripted_run, NULL, 0 },
    { "test.clear", "a scripted job kept in the clear", { 3, 1, 2 },
      scripted_run, NULL, 1 },
    { NULL, NULL, { 0, 0, 0 }, NULL, NULL, 0 },
};

static const struct connector_type TEST_TYPE = {
    .name = "testjobs", .summary = "jobs of the unit test", .jobs = TEST_JOBS,
};

/* ---- fixture ------------------------------------------------------------------- */

struct fx {
    struct wharf_fixture x;         /* the data dir, its wharf and store */
    struct conn_env *env;
    struct connector conn;
    struct connector *conns[1];
    struct flow flow;
    char msg[ID_LEN + 1];
    unsigned seed;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    wharf_fixture_open(&f->x);
    struct error err = {0};
    if ((f->env = conn_env_new(f->x.w, &err)) == NULL)
        fail_msg("setup: %s", err.msg);
    f->conn.type = &TEST_TYPE;
    f->conn.name = (char *)"t1";
    f->conn.log_level = -1;
    f->conn.env = f->env;
    f->conn.retry = (struct retry_policy){ 5, 1, 2 };
    f->conns[0] = &f->conn;
    f->flow.conns = f->conns;
    f->flow.nconns = 1;
    f->flow.env = f->env;
    /* a message whose one hop goes to t1 */
    const char *next[] = { "t1" };
    struct store_message m;
    memset(&m, 0, sizeof(m));
    id_new(f->msg);
    snprintf(m.id, sizeof(m.id), "%s", f->msg);
    m.created_at = time_now_ms();
    m.source = (char *)"inbox";
    m.size = 1;
    struct store_new it = { .msg = &m, .next = next, .nnext = 1 };
    if (store_intake(f->x.st, &it, 1, &err) != 0)
        fail_msg("intake: %s", err.msg);
    memset(&script, 0, sizeof(script));
    f->seed = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    conn_env_free(f->env);
    wharf_fixture_close(&f->x);
    free(f);
    return 0;
}

/* Add a job of kind test.job to the fixture's message. */
static void job_add(struct fx *f, int64_t hop_id, int waiting,
                    const char *data)
{
    struct error err = {0};
    struct secret *v = data ? secret_from(data, strlen(data)) : NULL;
    struct conn_job_new n = { .conn = "t1", .kind = "test.job",
        .message_id = f->msg, .hop_id = hop_id, .data = v,
        .waiting = waiting, .give_up_ms = 3600000, .note = "job added" };
    if (conn_job_add(f->env->jobs, &n, &err) != 0)
        fail_msg("conn_job_add: %s", err.msg);
    secret_free(v);
}

/* Straight from the database (tests may use SQL): the stored data (col 0)
 * or input (col 1) of the fixture's one job, malloc'ed. */
static unsigned char *raw_value(struct fx *f, int col, size_t *len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(f->x.w->db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, col ? "SELECT input FROM jobs"
                                        " WHERE message_id = ?1"
                                        : "SELECT data FROM jobs"
                                        " WHERE message_id = ?1", -1, &st,
                                        NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, f->msg, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    *len = (size_t)sqlite3_column_bytes(st, 0);
    unsigned char *b = malloc(*len + 1);
    memcpy(b, sqlite3_column_blob(st, 0), *len);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return b;
}

/* The one job of the fixture's message (fails unless there is one). */
static struct store_job *the_job(struct fx *f)
{
    struct store_job *j = NULL;
    size_t n = 0;
    struct error err = {0};
    assert_int_equal(store_message_jobs(f->x.st, f->msg, &j, &n, &err), 0);
    assert_int_equal(n, 1);
    return j;
}

static size_t events_with(struct fx *f, const char *level, const char *needle)
{
    struct store_event *ev;
    size_t n, hits = 0;
    struct error err = {0};
    assert_int_equal(store_message_events(f->x.st, f->msg, &ev, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        if ((level == NULL || strcmp(ev[i].level, level) == 0) &&
            strstr(ev[i].text, needle) != NULL)
            hits++;
    store_events_free(ev, n);
    return hits;
}

static size_t run(struct fx *f)
{
    return jobs_run(&f->flow, f->x.st, "w0", 5000, 16, &f->seed);
}

/* Run until a run finds nothing due for a while (the backoffs of the
 * test policy are milliseconds). */
static void run_until_idle(struct fx *f)
{
    for (int idle = 0; idle < 50; ) {
        if (run(f) == 0) {
            idle++;
            usleep(2000);
        } else {
            idle = 0;
        }
    }
}

/* The fixture's hop, leased and committed as waiting (an AS2 message sent,
 * its MDN expected). Its id. */
static int64_t hop_waiting(struct fx *f)
{
    struct store_hop *h = NULL;
    size_t n = 0;
    struct error err = {0};
    assert_int_equal(store_hop_lease(f->x.st, "w0", time_now_ms(), 5000, 10, &h,
                                     &n, &err), 0);
    assert_int_equal(n, 1);
    struct store_outcome o = { .hop_id = h[0].id, .message_id = f->msg,
        .connector = "t1", .owner = "w0", .result = HOP_WAIT,
        .attempts = 0, .next_at = time_now_ms() + 3600000,
        .receipt = "waiting for the answer" };
    assert_int_equal(store_hop_finish(f->x.st, &o, 1, NULL, &err), 0);
    int64_t id = h[0].id;
    store_hops_free(h, n);
    return id;
}

/* The fixture's delivery hop as it is now. */
struct hop_now {
    char state[16];
    int attempts;
    char receipt[128], error[256];
};

static void hop_get(struct fx *f, struct hop_now *out)
{
    struct store_hop *h = NULL;
    size_t n = 0;
    struct error err = {0};
    memset(out, 0, sizeof(*out));
    assert_int_equal(store_message_hops(f->x.st, f->msg, &h, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].state, "received") != 0) {
            snprintf(out->state, sizeof(out->state), "%s", h[i].state);
            out->attempts = h[i].attempts;
            snprintf(out->receipt, sizeof(out->receipt), "%s",
                     h[i].receipt ? h[i].receipt : "");
            snprintf(out->error, sizeof(out->error), "%s",
                     h[i].last_error ? h[i].last_error : "");
        }
    store_hops_free(h, n);
}

/* ---- the store: durable, leased once, given back -------------------------- */

static void test_m2_job_is_durable_and_leased_by_one_worker(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_job *j = NULL;
    size_t n = 0;
    job_add(f, 0, 0, "payload of the job");
    /* a restart: a new connection sees it */
    store_close(f->x.st);
    f->x.st = store_open(f->x.w->db_path, &err);
    assert_non_null(f->x.st);
    assert_int_equal(store_job_lease(f->x.st, "w1", time_now_ms(), 60000, 10,
                                     &j, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(j[0].kind, "test.job");
    assert_string_equal(j[0].message_id, f->msg);
    /* sealed in the store: the blob is not the data */
    assert_non_null(j[0].data);
    assert_null(memmem(j[0].data, j[0].data_len, "payload of the job", 18));
    store_jobs_free(j, n);
    /* leased: no second worker gets it */
    assert_int_equal(store_job_lease(f->x.st, "w2", time_now_ms(), 60000, 10,
                                     &j, &n, &err), 0);
    assert_int_equal(n, 0);
    store_jobs_free(j, n);
    /* its lease expired (a dead worker): the next one gets it */
    assert_int_equal(store_job_lease(f->x.st, "w2", time_now_ms() + 61000,
                                     60000, 10, &j, &n, &err), 0);
    assert_int_equal(n, 1);
    store_jobs_free(j, n);
    /* serve starts: every lease is given back */
    assert_int_equal(store_leases_release(f->x.st, &err), 0);
    j = the_job(f);
    assert_string_equal(j->state, "queued");
    store_jobs_free(j, 1);
    assert_int_equal(events_with(f, "info", "job added"), 1);
}

static void test_m4_job_replaced_and_cancelled(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    job_add(f, 0, 1, "first");
    job_add(f, 0, 1, "second");     /* replaces the first */
    struct store_job *j = the_job(f);
    assert_string_equal(j->state, "waiting");
    store_jobs_free(j, 1);
    assert_int_equal(conn_job_active(f->env->jobs, "t1", f->msg, "test.job",
                                     &err), 1);
    assert_int_equal(conn_job_cancel(f->env->jobs, "t1", f->msg, "test.job",
                                     &err), 1);
    assert_int_equal(conn_job_active(f->env->jobs, "t1", f->msg, "test.job",
                                     &err), 0);
    assert_int_equal(conn_job_cancel(f->env->jobs, "t1", f->msg, "test.job",
                                     &err), 0);
}

/* ---- the runner: its own policy, waits, input ------------------------------- */

static void test_m4_job_retried_by_its_own_policy_then_failed(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 8; i++)
        script.st[i] = WH_RETRY;
    job_add(f, 0, 0, "d");
    run_until_idle(f);
    /* the kind's max_attempts is 3 (the connector's would allow 5) */
    assert_int_equal(script.runs, 3);
    struct store_job *j = the_job(f);
    assert_string_equal(j->state, "failed");
    assert_int_equal(j->attempts, 3);
    assert_non_null(strstr(j->last_error, "scripted failure 3"));
    store_jobs_free(j, 1);
    /* every run is in the history */
    assert_int_equal(events_with(f, "warning", "attempt 1 failed"), 1);
    assert_int_equal(events_with(f, "warning", "attempt 2 failed"), 1);
    assert_int_equal(events_with(f, "error", "given up after 3 attempt"), 1);
    assert_string_equal(script.data, "d");
}

static void test_m4_job_waiting_counts_no_attempt(void **state)
{
    struct fx *f = *state;
    script.st[0] = script.st[1] = script.st[2] = WH_AGAIN;
    script.st[3] = WH_OK;
    job_add(f, 0, 0, NULL);
    run_until_idle(f);
    assert_int_equal(script.runs, 4);
    struct store_job *j = the_job(f);
    assert_string_equal(j->state, "done");
    assert_int_equal(j->attempts, 0);
    assert_int_equal(j->waits, 3);
    store_jobs_free(j, 1);
    /* what a wait says is said once, not per look */
    assert_int_equal(events_with(f, NULL, "not yet: said once"), 1);
    assert_int_equal(events_with(f, "info", "job test.job done"), 1);
}

static void test_m4_waiting_job_runs_when_its_input_arrives(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    script.st[0] = WH_OK;
    job_add(f, 0, 1, "sent as X");
    assert_int_equal(run(f), 0);            /* waits: not due */
    struct secret *in = secret_from("the answer", 10);
    assert_int_equal(conn_job_input(f->env->jobs, "t1", f->msg, "test.job",
                                    in, 0, &err), 1);
    /* sealed with the job */
    struct store_job *j = the_job(f);
    assert_string_equal(j->state, "queued");
    store_jobs_free(j, 1);
    size_t len = 0;
    unsigned char *b = raw_value(f, 0, &len);
    assert_null(memmem(b, len, "sent as X", 9));
    assert_int_equal(jobs_value_clear(b, len), 0);
    free(b);
    b = raw_value(f, 1, &len);
    assert_null(memmem(b, len, "the answer", 10));
    free(b);
    assert_int_equal(run(f), 1);
    assert_string_equal(script.input, "the answer");
    assert_string_equal(script.data, "sent as X");
    /* done: a late second answer finds nothing waiting */
    assert_int_equal(conn_job_input(f->env->jobs, "t1", f->msg, "test.job",
                                    in, 0, &err), 0);
    secret_free(in);
}

/* R15: a kind whose type keeps its values in the clear (AS2's MDN jobs:
 * what receipts and events keep in the clear anyway) stores data and
 * input as they are, behind the tag, and its handler gets them; a value
 * in the clear planted in a job of a kind that seals them is refused, not
 * handed to the handler. */
static void test_r15_job_values_in_the_clear_only_for_kinds_that_say_so(
    void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    script.st[0] = WH_OK;
    struct secret *v = secret_from("sent as Y", 9);
    struct conn_job_new n = { .conn = "t1", .kind = "test.clear",
        .message_id = f->msg, .data = v, .in_clear = 1, .waiting = 1,
        .give_up_ms = 3600000 };
    assert_int_equal(conn_job_add(f->env->jobs, &n, &err), 0);
    secret_free(v);
    struct secret *in = secret_from("the MDN", 7);
    assert_int_equal(conn_job_input(f->env->jobs, "t1", f->msg, "test.clear",
                                    in, 1, &err), 1);
    secret_free(in);
    size_t len = 0;
    unsigned char *b = raw_value(f, 0, &len);
    assert_int_equal(len, JOBS_CLEAR_LEN + 9);
    assert_memory_equal(b, JOBS_CLEAR_TAG "sent as Y", len);
    free(b);
    b = raw_value(f, 1, &len);
    assert_memory_equal(b, JOBS_CLEAR_TAG "the MDN", len);
    free(b);
    assert_int_equal(run(f), 1);
    assert_int_equal(script.runs, 1);
    assert_string_equal(script.data, "sent as Y");
    assert_string_equal(script.input, "the MDN");

    /* a sealing kind's value replaced by one in the clear: refused */
    job_add(f, 0, 0, "sealed data");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->x.w->db_path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, "UPDATE jobs SET data = CAST('"
                                  JOBS_CLEAR_TAG "forged' AS BLOB) WHERE"
                                  " kind = 'test.job'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(run(f), 1);
    assert_int_equal(script.runs, 1);       /* the handler never saw it */
    assert_int_equal(events_with(f, "warning", "is in the clear, but jobs "
                                 "of kind test.job keep theirs sealed"), 1);
}

static void test_m4_job_not_run_while_its_hop_is_delivered(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_hop *h = NULL;
    size_t n = 0;
    assert_int_equal(store_hop_lease(f->x.st, "w0", time_now_ms(), 60000, 10,
                                     &h, &n, &err), 0);
    assert_int_equal(n, 1);
    script.st[0] = WH_OK;
    job_add(f, h[0].id, 0, NULL);
    assert_int_equal(run(f), 0);            /* its hop is processing */
    struct store_outcome o = { .hop_id = h[0].id, .message_id = f->msg,
        .connector = "t1", .owner = "w0", .result = HOP_WAIT,
        .next_at = time_now_ms() + 3600000, .receipt = "waiting" };
    assert_int_equal(store_hop_finish(f->x.st, &o, 1, NULL, &err), 0);
    store_hops_free(h, n);
    assert_int_equal(run(f), 1);            /* now it runs */
}

/* ---- the job settles its hop ------------------------------------------------------ */

static void test_m4_job_settles_its_hop_sent(void **state)
{
    struct fx *f = *state;
    int64_t hop = hop_waiting(f);
    script.st[0] = WH_OK;
    script.hop[0] = CONN_JOB_HOP_SENT;
    job_add(f, hop, 0, NULL);
    assert_int_equal(run(f), 1);
    struct hop_now h;
    hop_get(f, &h);
    assert_string_equal(h.state, "sent");
    assert_string_equal(h.receipt, "confirmed");
    struct store_message m;
    struct error err = {0};
    assert_int_equal(store_message_get(f->x.st, f->msg, &m, &err), 0);
    assert_string_equal(m.state, "sent");
    store_message_clear(&m);
}

static void test_m4_job_gives_its_hop_a_failed_attempt(void **state)
{
    struct fx *f = *state;
    int64_t hop = hop_waiting(f);
    script.st[0] = WH_FAIL;
    script.hop[0] = CONN_JOB_HOP_RETRY;
    job_add(f, hop, 0, NULL);
    assert_int_equal(run(f), 1);
    struct hop_now h;
    hop_get(f, &h);
    /* the connector's retry policy (5 attempts): retrying, attempt 1 */
    assert_string_equal(h.state, "retrying");
    assert_int_equal(h.attempts, 1);
    assert_non_null(strstr(h.error, "scripted failure 1"));
    /* the job is expired, not failed: a resend sends the message again,
     * not this job */
    struct store_job *j = the_job(f);
    assert_string_equal(j->state, "expired");
    store_jobs_free(j, 1);
}

/* ---- resend -------------------------------------------------------------------------- */

static void test_m4_resend_queues_a_failed_job_again(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    for (int i = 0; i < 3; i++)
        script.st[i] = WH_RETRY;
    script.st[3] = WH_OK;
    /* the message was delivered: only its job failed */
    struct store_hop *h = NULL;
    size_t n = 0;
    assert_int_equal(store_hop_lease(f->x.st, "w0", time_now_ms(), 60000, 10,
                                     &h, &n, &err), 0);
    struct store_outcome o = { .hop_id = h[0].id, .message_id = f->msg,
        .connector = "t1", .owner = "w0", .result = HOP_SENT, .attempts = 1 };
    assert_int_equal(store_hop_finish(f->x.st, &o, 1, NULL, &err), 0);
    store_hops_free(h, n);
    job_add(f, 0, 0, NULL);
    run_until_idle(f);
    struct store_job *j = the_job(f);
    assert_string_equal(j->state, "failed");
    store_jobs_free(j, 1);
    int hops = -1, jobs = -1;
    assert_int_equal(store_message_resend(f->x.st, f->msg, "alice", NULL, 0,
                                          &hops, &jobs, &err), 0);
    assert_int_equal(jobs, 1);
    assert_int_equal(hops, 0);          /* the sent hop stays sent */
    j = the_job(f);
    assert_string_equal(j->state, "queued");
    assert_int_equal(j->attempts, 0);
    assert_true(j->give_up_at > time_now_ms());
    store_jobs_free(j, 1);
    assert_int_equal(events_with(f, "info", "1 job(s) queued"), 1);
    run_until_idle(f);
    j = the_job(f);
    assert_string_equal(j->state, "done");
    store_jobs_free(j, 1);
}

/* ---- state ---------------------------------------------------------------------------- */

static void test_r08_state_is_sealed_per_connector(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct secret *v = secret_from("refresh-token-1", 15), *got = NULL;
    int64_t exp = 0;
    assert_int_equal(conn_state_put(f->env->state, "t1", "oauth.refresh", v,
                                    12345, &err), 0);
    assert_int_equal(conn_state_put(f->env->state, "t1", "oauth.access", v, 0,
                                    &err), 0);
    /* sealed: the row does not hold the value */
    unsigned char *blob = NULL;
    size_t len = 0;
    assert_int_equal(store_csecret_get(f->x.st, "t1", "state:oauth.refresh",
                                       &blob, &len, NULL, &err), 1);
    assert_null(memmem(blob, len, "refresh-token-1", 15));
    free(blob);
    assert_int_equal(conn_state_get(f->env->state, "t1", "oauth.refresh", &got,
                                    &exp, &err), 1);
    assert_true(secret_equal(got, v));
    assert_int_equal(exp, 12345);
    secret_free(got);
    /* another connector's names are its own */
    assert_int_equal(conn_state_get(f->env->state, "t2", "oauth.refresh", &got,
                                    NULL, &err), 0);
    char **names = NULL;
    size_t n = 0;
    assert_int_equal(conn_state_names(f->env->state, "t1", "oauth.", &names,
                                      &n, &err), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    assert_int_equal(conn_state_drop(f->env->state, "t1", "oauth.refresh",
                                     &err), 0);
    assert_int_equal(conn_state_get(f->env->state, "t1", "oauth.refresh", &got,
                                    NULL, &err), 0);
    /* claim once: a second claim of the same key is refused */
    int64_t until = time_now_ms() + 60000;
    assert_int_equal(conn_state_claim(f->env->state, "t1", "sig", until,
                                      &err), 0);
    assert_int_equal(conn_state_claim(f->env->state, "t1", "sig", until,
                                      &err), 1);
    assert_int_equal(conn_state_settle(f->env->state, "t1", "sig", 0, &err),
                     0);
    assert_int_equal(conn_state_claim(f->env->state, "t1", "sig", until,
                                      &err), 0);
    secret_free(v);
}

/* Straight to the database (tests may use SQL): the fixture's message
 * delivered long ago, and its job in state. */
static void age_and_settle(struct fx *f, const char *job_state)
{
    sqlite3 *db = NULL;
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE hops SET state = 'sent';"
             "UPDATE messages SET state = 'sent', created_at = 1;"
             "UPDATE jobs SET state = '%s';", job_state);
    assert_int_equal(sqlite3_open(f->x.w->db_path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int64_t purge_now(struct fx *f)
{
    struct retention_plan p = { .before = time_now_ms(), .now = time_now_ms() };
    struct retention_result r;
    struct error err = {0};
    if (retention_purge(f->x.w, f->x.st, &p, &r, &err) != 0)
        fail_msg("purge: %s", err.msg);
    return r.messages;
}

/* R9 + jobs: a purge keeps a message whose job is still open (an MDN owed
 * or awaited), and takes the job rows with the message once it is done. */
static void test_r09_purge_keeps_open_jobs_and_takes_done_ones(void **state)
{
    struct fx *f = *state;
    job_add(f, 0, 1, "mdn");
    age_and_settle(f, "waiting");
    assert_int_equal(purge_now(f), 0);
    store_jobs_free(the_job(f), 1);
    age_and_settle(f, "done");
    assert_int_equal(purge_now(f), 1);
    struct store_job *j = NULL;
    size_t n = 9;
    struct error err = {0};
    assert_int_equal(store_message_jobs(f->x.st, f->msg, &j, &n, &err), 0);
    assert_int_equal(n, 0);
    store_jobs_free(j, n);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_m2_job_is_durable_and_leased_by_one_worker),
        T(test_m4_job_replaced_and_cancelled),
        T(test_m4_job_retried_by_its_own_policy_then_failed),
        T(test_m4_job_waiting_counts_no_attempt),
        T(test_m4_waiting_job_runs_when_its_input_arrives),
        T(test_r15_job_values_in_the_clear_only_for_kinds_that_say_so),
        T(test_m4_job_not_run_while_its_hop_is_delivered),
        T(test_m4_job_settles_its_hop_sent),
        T(test_m4_job_gives_its_hop_a_failed_attempt),
        T(test_m4_resend_queues_a_failed_job_again),
        T(test_r08_state_is_sealed_per_connector),
        T(test_r09_purge_keeps_open_jobs_and_takes_done_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
