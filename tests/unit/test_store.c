/*
 * test_store.c - the metadata store (store.h, SQLite backend) under the
 * flow engine's requirements: intake commits a message with its source hop,
 * its queued hops and its events in one transaction (M1) and recognizes
 * duplicates (M2); hops are leased, finished, retried, failed and resent
 * (M1); a lease that expired goes to the next worker and the first one's
 * late commit is refused (M2); listings filter and page; the flow is
 * replaced as a whole with a generation; the schema is versioned and
 * survives a reopen; a burst of messages is one all-or-nothing commit.
 *
 * These are the store's conformance tests: the same tests run against
 * SQLite and against a real PostgreSQL server (R21; scripts/run-unit.sh
 * starts one and names it in WHARF_TEST_PG; without it the PostgreSQL group
 * fails, it is not skipped). Tests of what is SQLite's alone (its
 * migration table, serve's start giving back every lease of the one node)
 * run against SQLite only; tests named r21 are about several connections
 * (nodes) sharing one database.
 *
 * Each test gets its own database: a file in a fresh temp dir, or a fresh
 * PostgreSQL database.
 */
#include "testutil.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "store/backup_store.h"
#include "store/job_store.h"
#include "store/node_store.h"
#include "store/partner_store.h"
#include "store/payload_store.h"
#include "store/pg_internal.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "store/store_internal.h"    /* store_db: counting VM steps */
#include "util/id.h"

/* ---- fixture ---------------------------------------------------------------- */

#include "store_fixture.h"

/* A message as a source would hand it to store_intake. Strings borrowed. */
static struct store_message msg_make(const char *id, const char *source,
                                     const char *filename,
                                     const char *dedup_key)
{
    struct store_message m;
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%s", id);
    m.created_at = time_now_ms();
    m.source = (char *)source;
    m.filename = (char *)filename;
    m.size = 42;
    m.sha256 = (char *)"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    m.payload_path = (char *)"payloads/20261123/x.wpay";
    m.dedup_key = (char *)dedup_key;
    return m;
}

/* Intake one message from `source` going on to next[0..nnext). */
static void intake1(struct store *st, const char *id, const char *source,
                    const char *const *next, size_t nnext)
{
    struct store_message m = msg_make(id, source, "a.edi", NULL);
    struct store_new it = { .msg = &m, .next = next, .nnext = nnext };
    struct error err = {0};
    if (store_intake(st, &it, 1, &err) != 0)
        fail_msg("store_intake: %s", err.msg);
    assert_int_equal(it.duplicate, 0);
}

/* The state of message id (a static copy, for assertions). */
static const char *msg_state(struct store *st, const char *id)
{
    static char state[32];
    struct store_message m;
    struct error err = {0};
    assert_int_equal(store_message_get(st, id, &m, &err), 0);
    assert_non_null(m.state);
    snprintf(state, sizeof(state), "%s", m.state);
    store_message_clear(&m);
    return state;
}

static size_t count_events(struct store *st, const char *id,
                           const char *level, const char *needle)
{
    struct store_event *ev;
    size_t n, hits = 0;
    struct error err = {0};
    assert_int_equal(store_message_events(st, id, &ev, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        if ((level == NULL || strcmp(ev[i].level, level) == 0) &&
            (needle == NULL || strstr(ev[i].text, needle) != NULL))
            hits++;
    store_events_free(ev, n);
    return hits;
}

/* Lease everything due now for owner; returns the count, *out owned. */
static size_t lease_now(struct store *st, const char *owner, int64_t lease_ms,
                        struct store_hop **out)
{
    size_t n = 0;
    struct error err = {0};
    if (store_hop_lease(st, owner, time_now_ms(), lease_ms, 100, out, &n,
                        &err) != 0)
        fail_msg("store_hop_lease: %s", err.msg);
    return n;
}

static struct store_outcome outcome(const struct store_hop *h,
                                    const char *owner, enum hop_result r)
{
    struct store_outcome o;
    memset(&o, 0, sizeof(o));
    o.hop_id = h->id;
    o.message_id = h->message_id;
    o.connector = h->connector;
    o.owner = owner;
    o.result = r;
    o.attempts = h->attempts + 1;
    return o;
}

static void finish1(struct store *st, const struct store_outcome *o,
                    size_t expect_skipped)
{
    size_t skipped = 99;
    struct error err = {0};
    if (store_hop_finish(st, o, 1, &skipped, &err) != 0)
        fail_msg("store_hop_finish: %s", err.msg);
    assert_int_equal(skipped, expect_skipped);
}

static const char *ID1 = "01900000-0000-7000-8000-000000000001";

/* ---- M1: intake ------------------------------------------------------------- */

static void test_m1_intake_creates_message_hops_events(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox", "archive" };
    intake1(f->st, ID1, "inbox", next, 2);

    struct store_message m;
    struct error err = {0};
    assert_int_equal(store_message_get(f->st, ID1, &m, &err), 0);
    assert_string_equal(m.id, ID1);
    assert_string_equal(m.source, "inbox");
    assert_string_equal(m.filename, "a.edi");
    assert_string_equal(m.state, "queued");
    assert_int_equal(m.size, 42);
    assert_string_equal(m.payload_path, "payloads/20261123/x.wpay");
    assert_null(m.dedup_key);
    store_message_clear(&m);

    struct store_hop *h;
    size_t n;
    assert_int_equal(store_message_hops(f->st, ID1, &h, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(h[0].connector, "inbox");
    assert_string_equal(h[0].state, "received");
    assert_string_equal(h[1].connector, "outbox");
    assert_string_equal(h[1].state, "queued");
    assert_string_equal(h[2].connector, "archive");
    assert_string_equal(h[2].state, "queued");
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(h[i].message_id, ID1);
        assert_int_equal(h[i].attempts, 0);
    }
    store_hops_free(h, n);

    assert_int_equal(count_events(f->st, ID1, NULL, NULL), 3);
    assert_int_equal(count_events(f->st, ID1, "info", "received by inbox: a.edi"), 1);
    assert_int_equal(count_events(f->st, ID1, "info", "queued for outbox"), 1);
    assert_int_equal(count_events(f->st, ID1, "info", "queued for archive"), 1);

    int64_t q, p, r, s, fl;
    assert_int_equal(store_hop_counts(f->st, &q, &p, &r, &s, &fl, &err), 0);
    assert_int_equal(q, 2);
    assert_int_equal(p + r + s + fl, 0);

    /* A message with nowhere to go is only received. */
    const char *ID2 = "01900000-0000-7000-8000-000000000002";
    intake1(f->st, ID2, "inbox", NULL, 0);
    assert_string_equal(msg_state(f->st, ID2), "received");
    assert_int_equal(store_message_get(f->st, "01900000-0000-7000-8000-00000000ffff",
                                       &m, &err), 1);
    store_message_clear(&m);
}

/* ---- M2: duplicates ------------------------------------------------------------ */

static void test_m2_dedup_same_source_key(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    const char *ID2 = "01900000-0000-7000-8000-000000000002";
    const char *ID3 = "01900000-0000-7000-8000-000000000003";
    struct error err = {0};

    struct store_message m1 = msg_make(ID1, "inbox", "a.edi", "key-a");
    struct store_new a = { .msg = &m1, .next = next, .nnext = 1 };
    assert_int_equal(store_intake(f->st, &a, 1, &err), 0);
    assert_int_equal(a.duplicate, 0);

    /* Same source and key, new id: a duplicate naming the stored one. */
    struct store_message m2 = msg_make(ID2, "inbox", "a.edi", "key-a");
    struct store_new b = { .msg = &m2, .next = next, .nnext = 1 };
    assert_int_equal(store_intake(f->st, &b, 1, &err), 0);
    assert_int_equal(b.duplicate, 1);
    assert_string_equal(b.existing_id, ID1);

    struct store_message got;
    assert_int_equal(store_message_get(f->st, ID2, &got, &err), 1);
    store_message_clear(&got);
    struct store_hop *h;
    size_t n;
    assert_int_equal(store_message_hops(f->st, ID2, &h, &n, &err), 0);
    assert_int_equal(n, 0);
    store_hops_free(h, n);
    assert_int_equal(count_events(f->st, ID2, NULL, NULL), 0);
    assert_int_equal(store_message_hops(f->st, ID1, &h, &n, &err), 0);
    assert_int_equal(n, 2);
    store_hops_free(h, n);

    struct store_message *list;
    assert_int_equal(store_message_list(f->st, NULL, 100, 0, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    store_messages_free(list, n);

    /* The same key from another source is a different message. */
    struct store_message m3 = msg_make(ID3, "other", "a.edi", "key-a");
    struct store_new c = { .msg = &m3, .next = next, .nnext = 1 };
    assert_int_equal(store_intake(f->st, &c, 1, &err), 0);
    assert_int_equal(c.duplicate, 0);
    assert_int_equal(store_message_get(f->st, ID3, &got, &err), 0);
    assert_string_equal(got.dedup_key, "key-a");
    store_message_clear(&got);
}

/* ---- M1: lease, finish, next hops --------------------------------------------- */

static void test_m1_lease_and_finish_sent_queues_next(void **state)
{
    struct fx *f = *state;
    const char *first[] = { "middle" };
    intake1(f->st, ID1, "inbox", first, 1);

    struct store_hop *h;
    size_t n = lease_now(f->st, "w1", 60000, &h);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].connector, "middle");
    assert_string_equal(h[0].message_id, ID1);
    assert_string_equal(h[0].state, "queued");      /* as it was when leased */
    assert_string_equal(msg_state(f->st, ID1), "queued");

    /* Leased: nobody else gets it while the lease runs. */
    struct store_hop *h2;
    assert_int_equal(lease_now(f->st, "w2", 60000, &h2), 0);
    store_hops_free(h2, 0);

    const char *then[] = { "last" };
    struct store_outcome o = outcome(&h[0], "w1", HOP_SENT);
    o.receipt = "MDN ok";
    o.next = then;
    o.nnext = 1;
    finish1(f->st, &o, 0);
    store_hops_free(h, n);
    assert_string_equal(msg_state(f->st, ID1), "queued");

    struct store_hop *all;
    struct error err = {0};
    assert_int_equal(store_message_hops(f->st, ID1, &all, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(all[1].connector, "middle");
    assert_string_equal(all[1].state, "sent");
    assert_int_equal(all[1].attempts, 1);
    assert_string_equal(all[1].receipt, "MDN ok");
    assert_null(all[1].last_error);
    assert_string_equal(all[2].connector, "last");
    assert_string_equal(all[2].state, "queued");
    store_hops_free(all, n);
    assert_int_equal(count_events(f->st, ID1, "info", "sent by middle (attempt 1): MDN ok"), 1);
    assert_int_equal(count_events(f->st, ID1, "info", "queued for last"), 1);

    /* The last hop: leased, sent, nothing next: the message is sent. */
    n = lease_now(f->st, "w1", 60000, &h);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].connector, "last");
    assert_string_equal(msg_state(f->st, ID1), "queued");
    o = outcome(&h[0], "w1", HOP_SENT);
    finish1(f->st, &o, 0);
    store_hops_free(h, n);
    assert_string_equal(msg_state(f->st, ID1), "sent");
    assert_int_equal(lease_now(f->st, "w1", 60000, &h), 0);
    store_hops_free(h, 0);

    int64_t q, p, r, s, fl;
    assert_int_equal(store_hop_counts(f->st, &q, &p, &r, &s, &fl, &err), 0);
    assert_int_equal(s, 2);
    assert_int_equal(q + p + r + fl, 0);
}

static void test_m1_retry_then_failed_state(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);

    struct store_hop *h;
    size_t n = lease_now(f->st, "w1", 60000, &h);
    assert_int_equal(n, 1);
    int64_t later = time_now_ms() + 3600 * 1000;
    struct store_outcome o = outcome(&h[0], "w1", HOP_RETRY);
    o.next_at = later;
    o.error = "connection refused";
    finish1(f->st, &o, 0);
    int64_t hop_id = h[0].id;
    store_hops_free(h, n);
    assert_string_equal(msg_state(f->st, ID1), "retrying");
    assert_int_equal(count_events(f->st, ID1, "warning",
                     "attempt 1 by outbox failed, will retry: connection refused"), 1);

    /* Not due before next_at ... */
    assert_int_equal(lease_now(f->st, "w1", 60000, &h), 0);
    store_hops_free(h, 0);
    struct store_hop *all;
    struct error err = {0};
    assert_int_equal(store_message_hops(f->st, ID1, &all, &n, &err), 0);
    assert_string_equal(all[1].state, "retrying");
    assert_int_equal(all[1].attempts, 1);
    assert_true(all[1].next_at == later);
    assert_string_equal(all[1].last_error, "connection refused");
    store_hops_free(all, n);

    /* ... and due after it. */
    assert_int_equal(store_hop_lease(f->st, "w1", later, 60000, 10, &h, &n,
                                     &err), 0);
    assert_int_equal(n, 1);
    assert_true(h[0].id == hop_id);
    assert_int_equal(h[0].attempts, 1);
    o = outcome(&h[0], "w1", HOP_FAILED);
    o.error = "permission denied";
    finish1(f->st, &o, 0);
    store_hops_free(h, n);

    assert_string_equal(msg_state(f->st, ID1), "failed");
    assert_int_equal(store_message_hops(f->st, ID1, &all, &n, &err), 0);
    assert_string_equal(all[1].state, "failed");
    assert_int_equal(all[1].attempts, 2);
    assert_string_equal(all[1].last_error, "permission denied");
    store_hops_free(all, n);
    assert_int_equal(count_events(f->st, ID1, "error",
                     "failed at outbox after 2 attempt(s): permission denied"), 1);
    /* Failed hops are parked: never leased again by themselves. */
    assert_int_equal(store_hop_lease(f->st, "w1", later + 86400000LL, 60000, 10,
                                     &h, &n, &err), 0);
    assert_int_equal(n, 0);
    store_hops_free(h, n);

    struct store_message *list;
    assert_int_equal(store_message_list(f->st, "failed", 10, 0, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, ID1);
    store_messages_free(list, n);
}

/* ---- M2: a dead worker's lease expires ------------------------------------------ */

static void test_m2_renewed_lease_is_not_leased_again(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);
    struct store_hop *h1, *h2 = NULL;
    struct error err = {0};
    assert_int_equal(lease_now(f->st, "worker-1", 1, &h1), 1);
    /* the lease keeper extends it before it runs out; another owner's
     * renewal changes nothing */
    assert_int_equal(store_leases_renew(f->st, "worker-1",
                                        time_now_ms() + 60000, &err), 0);
    assert_int_equal(store_leases_renew(f->st, "worker-3", 0, &err), 0);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    assert_int_equal(lease_now(f->st, "worker-2", 60000, &h2), 0);
    /* worker-1's outcome is still its own to record */
    struct store_outcome o = outcome(&h1[0], "worker-1", HOP_SENT);
    finish1(f->st, &o, 0);
    struct store_hop *all;
    size_t n;
    assert_int_equal(store_message_hops(f->st, ID1, &all, &n, &err), 0);
    assert_string_equal(all[1].state, "sent");
    store_hops_free(all, n);
    store_hops_free(h1, 1);
    free(h2);
}

static void test_m2_expired_lease_is_leased_again(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);

    struct store_hop *h1, *h2;
    assert_int_equal(lease_now(f->st, "worker-1", 1, &h1), 1);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    assert_int_equal(lease_now(f->st, "worker-2", 60000, &h2), 1);
    assert_true(h1[0].id == h2[0].id);

    /* worker-1 comes back late: its commit is refused, nothing changes. */
    struct store_outcome o = outcome(&h1[0], "worker-1", HOP_FAILED);
    o.error = "late";
    finish1(f->st, &o, 1);
    assert_string_equal(msg_state(f->st, ID1), "queued");
    assert_int_equal(count_events(f->st, ID1, NULL, "late"), 0);
    struct store_hop *all;
    size_t n;
    struct error err = {0};
    assert_int_equal(store_message_hops(f->st, ID1, &all, &n, &err), 0);
    assert_string_equal(all[1].state, "processing");
    assert_int_equal(all[1].attempts, 0);
    store_hops_free(all, n);

    /* worker-2 holds the lease: its commit counts. */
    o = outcome(&h2[0], "worker-2", HOP_SENT);
    finish1(f->st, &o, 0);
    assert_string_equal(msg_state(f->st, ID1), "sent");
    store_hops_free(h1, 1);
    store_hops_free(h2, 1);
}

/* ---- M1: resend ------------------------------------------------------------------ */

static void test_m1_resend_requeues_failed(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "good", "bad" };
    intake1(f->st, ID1, "inbox", next, 2);
    struct store_hop *h;
    size_t n = lease_now(f->st, "w1", 60000, &h);
    assert_int_equal(n, 2);
    struct store_outcome o[2];
    for (size_t i = 0; i < 2; i++) {
        int bad = strcmp(h[i].connector, "bad") == 0;
        o[i] = outcome(&h[i], "w1", bad ? HOP_FAILED : HOP_SENT);
        o[i].attempts = 3;
        o[i].error = bad ? "disk full" : NULL;
    }
    size_t skipped = 9;
    struct error err = {0};
    assert_int_equal(store_hop_finish(f->st, o, 2, &skipped, &err), 0);
    assert_int_equal(skipped, 0);
    store_hops_free(h, n);
    assert_string_equal(msg_state(f->st, ID1), "failed");

    int requeued = -1;
    assert_int_equal(store_message_resend(f->st, ID1, "alice", NULL, 0, &requeued, NULL, &err), 0);
    assert_int_equal(requeued, 1);
    assert_string_equal(msg_state(f->st, ID1), "queued");
    assert_int_equal(count_events(f->st, ID1, "info",
                     "resend requested by alice: 1 hop(s) queued"), 1);

    struct store_hop *all;
    assert_int_equal(store_message_hops(f->st, ID1, &all, &n, &err), 0);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(all[i].connector, "bad") == 0) {
            assert_string_equal(all[i].state, "queued");
            assert_int_equal(all[i].attempts, 0);
            assert_null(all[i].last_error);
        } else {
            assert_string_equal(all[i].state, "sent");   /* untouched */
        }
    }
    store_hops_free(all, n);

    /* Only the re-queued hop is leased again; send it. */
    n = lease_now(f->st, "w2", 60000, &h);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].connector, "bad");
    o[0] = outcome(&h[0], "w2", HOP_SENT);
    finish1(f->st, &o[0], 0);
    store_hops_free(h, n);
    assert_string_equal(msg_state(f->st, ID1), "sent");

    /* Nothing failed: resend sends every delivery hop again. */
    assert_int_equal(store_message_resend(f->st, ID1, "bob", NULL, 0, &requeued, NULL, &err), 0);
    assert_int_equal(requeued, 2);
    assert_string_equal(msg_state(f->st, ID1), "queued");

    assert_int_equal(store_message_resend(f->st, "01900000-0000-7000-8000-00000000ffff",
                                          "bob", NULL, 0, &requeued, NULL, &err), 1);
}

/* A lease takes the due hops of every state together, earliest next_at
 * first, at most max: a retry due before, a hop whose lease ran out, and
 * only then one queued later. */
static void test_m2_lease_takes_due_hops_of_every_state_in_order(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    static const char *ID2 = "01900000-0000-7000-8000-000000000002";
    static const char *ID3 = "01900000-0000-7000-8000-000000000003";
    intake1(f->st, ID1, "inbox", next, 1);
    intake1(f->st, ID2, "inbox", next, 1);
    struct store_hop *h = NULL, *g = NULL;
    assert_int_equal(lease_now(f->st, "worker-1", 1, &h), 2);
    size_t r = strcmp(h[0].message_id, ID1) == 0 ? 0 : 1;
    struct store_outcome o = outcome(&h[r], "worker-1", HOP_RETRY);
    o.error = "try again";
    o.next_at = time_now_ms() - 10000;      /* due, the earliest */
    finish1(f->st, &o, 0);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);                   /* ID2's lease runs out */
    intake1(f->st, ID3, "inbox", next, 1);  /* queued, the latest */
    size_t n = 0;
    struct error err = {0};
    if (store_hop_lease(f->st, "worker-2", time_now_ms(), 60000, 2, &g, &n,
                        &err) != 0)
        fail_msg("store_hop_lease: %s", err.msg);
    assert_int_equal(n, 2);
    assert_string_equal(g[0].message_id, ID1);
    assert_string_equal(g[0].state, "retrying");
    assert_string_equal(g[1].message_id, ID2);
    assert_string_equal(g[1].state, "processing");
    store_hops_free(g, n);
    assert_int_equal(lease_now(f->st, "worker-2", 60000, &g), 1);
    assert_string_equal(g[0].message_id, ID3);
    store_hops_free(g, 1);
    store_hops_free(h, 2);
}

/* The test hook store.intake_lost (util/fault.h) on both backends: the
 * intake commits, then reports a failure, as a connection lost before
 * COMMIT's answer does (core/intake.c keeps the payload of such a
 * message: test_intake.c). */
static void test_m2_intake_lost_commit_hook_commits(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    struct store_message m = msg_make(ID1, "inbox", "a.edi", NULL);
    struct store_new it = { .msg = &m, .next = next, .nnext = 1 };
    struct error err = {0};
    static int runs;            /* fault counts add up in the process */
    char spec[64];
    snprintf(spec, sizeof(spec), "store.intake_lost:%d:EIO", ++runs);
    setenv("WHARF_FAULT", spec, 1);
    int rc = store_intake(f->st, &it, 1, &err);
    unsetenv("WHARF_FAULT");
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "injected"));
    assert_string_equal(msg_state(f->st, ID1), "queued");
}

/* Queue n hops (messages of size bytes from "inbox" to "outbox") in one
 * transaction. */
static void queue_hops(struct store *st, size_t n, int64_t size)
{
    const char *next[] = { "outbox" };
    char (*ids)[ID_LEN + 1] = calloc(n, sizeof(*ids));
    struct store_message *msgs = calloc(n, sizeof(*msgs));
    struct store_new *items = calloc(n, sizeof(*items));
    assert_true(ids && msgs && items);
    for (size_t i = 0; i < n; i++) {
        id_new(ids[i]);
        msgs[i] = msg_make(ids[i], "inbox", "q.edi", NULL);
        msgs[i].size = size;
        items[i] = (struct store_new){ .msg = &msgs[i], .next = next,
                                       .nnext = 1 };
    }
    struct error err = {0};
    if (store_intake(st, items, n, &err) != 0)
        fail_msg("store_intake: %s", err.msg);
    free(items);
    free(msgs);
    free(ids);
}

/* Queue n hops of small messages due an hour before everything queued
 * so far, as after a partner's outage: the large lane's hops come after
 * them in due order. */
static void queue_small_first(struct fx *f, size_t n)
{
    queue_hops(f->st, n, 0);
    raw_exec(f, "UPDATE hops SET next_at = next_at - 3600000"
                " WHERE state = 'queued' AND message_id IN"
                " (SELECT id FROM messages WHERE size = 0)");
}

/* The engine's two lanes with its default bound (engine.c). */
static const struct store_lane SMALL_LANE = { 0, (8LL << 20) - 1 };
static const struct store_lane LARGE_LANE = { 8LL << 20, INT64_MAX };
#define LARGE_SIZE (20LL << 20)

/* Lease one due hop of lane (NULL: any; there must be one), keep it. */
static void lease_one(struct store *st, const struct store_lane *lane)
{
    struct store_hop *h = NULL;
    size_t n = 0;
    struct error err = {0};
    if (store_hop_lease_lane(st, "w", time_now_ms(), 60000, 1, lane, &h, &n,
                             &err) != 0)
        fail_msg("store_hop_lease: %s", err.msg);
    assert_int_equal(n, 1);
    store_hops_free(h, n);
}

/* The SQLite VM steps of leasing one hop of lane: every statement's count
 * is reset, the lease runs, the counts are added up. */
static uint64_t lease_steps(struct store *st, const struct store_lane *lane)
{
    sqlite3 *db = store_db(st);
    for (sqlite3_stmt *q = sqlite3_next_stmt(db, NULL); q != NULL;
         q = sqlite3_next_stmt(db, q))
        sqlite3_stmt_status(q, SQLITE_STMTSTATUS_VM_STEP, 1);
    lease_one(st, lane);
    uint64_t steps = 0;
    for (sqlite3_stmt *q = sqlite3_next_stmt(db, NULL); q != NULL;
         q = sqlite3_next_stmt(db, q))
        steps += (uint64_t)sqlite3_stmt_status(q, SQLITE_STMTSTATUS_VM_STEP,
                                               0);
    return steps;
}

/* A lease's work (what) with 20 and with 2,000 more hops queued: within
 * twice, or the test fails. */
static void work_bounded(const char *what, const char *unit, long long few,
                         long long many)
{
    print_message("%s: %lld %s with 20 queued, %lld with 2,020\n", what,
                  few, unit, many);
    if (many > 2 * few)
        fail_msg("%s took %lld %s with 2,020 queued, %lld with 20", what,
                 many, unit, few);
}

/* The VM steps of one lease of lane with 20 and with 2,020 small hops
 * queued first, both on prepared statements. */
static void sqlite_lease_work(struct fx *f, const struct store_lane *lane,
                              long long *few, long long *many)
{
    queue_small_first(f, 20);
    lease_steps(f->st, lane);
    *few = (long long)lease_steps(f->st, lane);
    queue_small_first(f, 2000);
    *many = (long long)lease_steps(f->st, lane);
}

/* A lease reads about as many hops as it takes, however long the queue
 * is: after a partner's outage a queue of 100,000 made every lease read
 * and sort all of them, under the write lock (docs/performance.md). Its
 * work (SQLite's VM steps) with 2,020 hops queued stays within twice
 * that with 20. */
static void test_m2_lease_work_does_not_grow_with_the_queue(void **state)
{
    long long few, many;
    sqlite_lease_work(*state, NULL, &few, &many);
    work_bounded("leasing one hop", "VM steps", few, many);
}

/* The same for the large lane while small messages queue up: read in
 * due order, each of its leases went past every due small hop (100,000
 * queued: 170 ms per lease, an idle large worker leasing every 200 ms). */
static void test_m4_large_lane_lease_work_does_not_grow_with_small_ones(
    void **state)
{
    struct fx *f = *state;
    long long few, many;
    queue_hops(f->st, 3, LARGE_SIZE);
    sqlite_lease_work(f, &LARGE_LANE, &few, &many);
    work_bounded("leasing one large hop", "VM steps", few, many);
    lease_one(f->st, &SMALL_LANE);      /* the small lane still leases */
}

static void test_m2_leases_release(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);
    struct store_hop *h;
    assert_int_equal(lease_now(f->st, "old-serve", 3600 * 1000, &h), 1);
    store_hops_free(h, 1);
    assert_int_equal(lease_now(f->st, "new-serve", 60000, &h), 0);
    store_hops_free(h, 0);

    struct error err = {0};
    assert_int_equal(store_leases_release(f->st, &err), 0);
    int64_t q, p, r, s, fl;
    assert_int_equal(store_hop_counts(f->st, &q, &p, &r, &s, &fl, &err), 0);
    assert_int_equal(q, 1);
    assert_int_equal(p, 0);

    assert_int_equal(lease_now(f->st, "new-serve", 60000, &h), 1);
    struct store_outcome o = outcome(&h[0], "new-serve", HOP_SENT);
    finish1(f->st, &o, 0);
    store_hops_free(h, 1);
    assert_string_equal(msg_state(f->st, ID1), "sent");
}

/* ---- M1: listing ---------------------------------------------------------------------- */

static void test_m1_message_list_filter_and_paging(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    char ids[10][ID_LEN + 1];
    for (int i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof(ids[i]), "01900000-0000-7000-8000-0000000000%02d", i);
        /* even: queued for outbox; odd: received only */
        intake1(f->st, ids[i], "inbox", next, i % 2 == 0 ? 1 : 0);
    }
    struct store_message *page;
    size_t n;
    struct error err = {0};
    int seen[10] = {0};
    int expect = 9;
    for (int64_t off = 0; off < 12; off += 4) {
        assert_int_equal(store_message_list(f->st, NULL, 4, off, &page, &n, &err), 0);
        assert_int_equal(n, off < 8 ? 4 : 2);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(page[i].id, ids[expect]);   /* newest first */
            assert_string_equal(page[i].source, "inbox");
            seen[expect--]++;
        }
        store_messages_free(page, n);
    }
    for (int i = 0; i < 10; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(store_message_list(f->st, NULL, 4, 10, &page, &n, &err), 0);
    assert_int_equal(n, 0);
    store_messages_free(page, n);

    assert_int_equal(store_message_list(f->st, "received", 100, 0, &page, &n, &err), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(page[i].state, "received");
        assert_string_equal(page[i].id, ids[9 - 2 * i]);
    }
    store_messages_free(page, n);
    assert_int_equal(store_message_list(f->st, "queued", 2, 1, &page, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(page[0].id, ids[6]);
    assert_string_equal(page[1].id, ids[4]);
    store_messages_free(page, n);
    assert_int_equal(store_message_list(f->st, "failed", 100, 0, &page, &n, &err), 0);
    assert_int_equal(n, 0);
    store_messages_free(page, n);
}

/* A refused message is listed under its own state; every state a filter
 * accepts is one the store knows (the CLI and the API validate with it). */
static void test_m1_message_list_refused_state(void **state)
{
    struct fx *f = *state;
    char id[ID_LEN + 1];
    struct error err = {0};
    intake1(f->st, ID1, "inbox", NULL, 0);
    assert_int_equal(store_message_refused(f->st, "as2-a", "refused (test)",
                                           id, &err), 0);
    struct store_message *page;
    size_t n;
    assert_int_equal(store_message_list(f->st, "refused", 100, 0, &page, &n,
                                        &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].id, id);
    assert_string_equal(page[0].state, "refused");
    store_messages_free(page, n);
    for (int i = 0; store_message_states[i]; i++)
        assert_true(store_message_state_known(store_message_states[i]));
    assert_true(store_message_state_known("refused"));
    assert_true(store_message_state_known("erased"));
    assert_false(store_message_state_known("snet"));
    assert_false(store_message_state_known(NULL));
}

/* show/resend resolve a unique id prefix: a range of the primary key, so
 * an id that merely contains the prefix, or ends beyond it, never counts. */
static void test_m8_message_id_prefix(void **state)
{
    struct fx *f = *state;
    static const char *ids[] = {
        "01900000-aaaa-7000-8000-000000000001",
        "01900000-aaab-7000-8000-000000000002",
        "01900000-abcd-7000-8000-000000000003",
        "01911111-0000-7000-8000-0190000000aa",
    };
    for (size_t i = 0; i < 4; i++)
        intake1(f->st, ids[i], "inbox", NULL, 0);
    char id[ID_LEN + 1];
    int64_t count = -1;
    struct error err = {0};
    assert_int_equal(store_message_prefix(f->st, "01900000-ab", id, &count,
                                          &err), 0);
    assert_int_equal(count, 1);
    assert_string_equal(id, ids[2]);
    assert_int_equal(store_message_prefix(f->st, "01900000-aaa", id, &count,
                                          &err), 0);
    assert_int_equal(count, 2);
    assert_string_equal(id, "");
    assert_int_equal(store_message_prefix(f->st, "019000", id, &count, &err),
                     0);
    assert_int_equal(count, 3);
    assert_int_equal(store_message_prefix(f->st, "019111", id, &count, &err),
                     0);
    assert_int_equal(count, 1);
    assert_string_equal(id, ids[3]);
    assert_int_equal(store_message_prefix(f->st, ids[1], id, &count, &err), 0);
    assert_int_equal(count, 1);
    assert_string_equal(id, ids[1]);
    assert_int_equal(store_message_prefix(f->st, "0190000000aa", id, &count,
                                          &err), 0);
    assert_int_equal(count, 0);
    assert_int_equal(store_message_prefix(f->st, "ffffff", id, &count, &err),
                     0);
    assert_int_equal(count, 0);
}

/* ---- M1: the flow ------------------------------------------------------------------------ */

static void test_m1_flow_put_get_generation(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    assert_true(store_flow_generation(f->st, &err) == 0);
    struct store_flow got;
    assert_int_equal(store_flow_get(f->st, &got, &err), 0);
    assert_int_equal(got.nconns, 0);
    assert_int_equal(got.nlinks, 0);
    assert_true(got.generation == 0);
    store_flow_clear(&got);

    struct store_connector c1[] = {
        { "inbox", "file", "{\"receive_dir\":\"/srv/in\"}" },
        { "outbox", "file", "{\"send_dir\":\"/srv/out\"}" },
        { "audit", "file", "{\"send_dir\":\"/srv/audit\"}" },
    };
    struct store_link l1[] = { { "inbox", "outbox" }, { "inbox", "audit" } };
    struct store_flow put = { .conns = c1, .nconns = 3, .links = l1, .nlinks = 2 };
    assert_int_equal(store_flow_put(f->st, &put, &err), 0);
    assert_true(store_flow_generation(f->st, &err) == 1);

    assert_int_equal(store_flow_get(f->st, &got, &err), 0);
    assert_true(got.generation == 1);
    assert_int_equal(got.nconns, 3);
    for (size_t i = 0; i < 3; i++) {      /* in the order given */
        assert_string_equal(got.conns[i].name, c1[i].name);
        assert_string_equal(got.conns[i].type, c1[i].type);
        assert_string_equal(got.conns[i].config, c1[i].config);
    }
    assert_int_equal(got.nlinks, 2);
    assert_string_equal(got.links[0].src, "inbox");
    assert_string_equal(got.links[0].dst, "outbox");
    assert_string_equal(got.links[1].dst, "audit");
    store_flow_clear(&got);
    assert_null(got.conns);
    assert_int_equal(got.nconns, 0);

    /* A put replaces everything. */
    struct store_connector c2[] = { { "only", "file", "{\"send_dir\":\"/x\"}" } };
    struct store_flow put2 = { .conns = c2, .nconns = 1, .links = NULL, .nlinks = 0 };
    assert_int_equal(store_flow_put(f->st, &put2, &err), 0);
    assert_int_equal(store_flow_get(f->st, &got, &err), 0);
    assert_true(got.generation == 2);
    assert_int_equal(got.nconns, 1);
    assert_string_equal(got.conns[0].name, "only");
    assert_int_equal(got.nlinks, 0);
    store_flow_clear(&got);

    /* A put that fails (two connectors of one name) changes nothing. */
    struct store_connector c3[] = { { "dup", "file", "{}" }, { "dup", "file", "{}" } };
    struct store_flow put3 = { .conns = c3, .nconns = 2, .links = NULL, .nlinks = 0 };
    assert_int_equal(store_flow_put(f->st, &put3, &err), -1);
    assert_non_null(strstr(err.msg, "insert connector"));
    assert_int_equal(store_flow_get(f->st, &got, &err), 0);
    assert_true(got.generation == 2);
    assert_int_equal(got.nconns, 1);
    assert_string_equal(got.conns[0].name, "only");
    store_flow_clear(&got);

    /* Settings, which the generation lives beside. */
    char *v = (char *)"x";
    assert_int_equal(store_setting_get(f->st, "nope", &v, &err), 0);
    assert_null(v);
    assert_int_equal(store_setting_set(f->st, "k", "v1", &err), 0);
    assert_int_equal(store_setting_set(f->st, "k", "v2", &err), 0);
    assert_int_equal(store_setting_get(f->st, "k", &v, &err), 0);
    assert_string_equal(v, "v2");
    free(v);
}

/* ---- M2: schema ------------------------------------------------------------------------------ */

static void test_m2_migration_version(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    assert_int_equal(store_schema_version(f->st), STORE_SCHEMA_VERSION);
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);
    store_close(f->st);

    /* Reopen: no migration runs again, the data is there. */
    f->st = store_open(f->db, &err);
    if (f->st == NULL)
        fail_msg("reopen: %s", err.msg);
    assert_int_equal(store_schema_version(f->st), STORE_SCHEMA_VERSION);
    assert_string_equal(msg_state(f->st, ID1), "queued");
    store_close(f->st);
    f->st = NULL;

    /* One version row per migration, none applied twice. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*), COUNT(DISTINCT "
                     "version) FROM schema_version", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), STORE_SCHEMA_VERSION);
    assert_int_equal(sqlite3_column_int(q, 1), STORE_SCHEMA_VERSION);
    sqlite3_finalize(q);
    /* A database from a newer wharf is refused, not downgraded. */
    assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_version(version, "
                     "applied_at) VALUES(999, 0)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_null(store_open(f->db, &err));
    assert_non_null(strstr(err.msg, "schema version 999"));
    assert_non_null(strstr(err.msg, "upgrade wharf"));

    /* A fresh store after the refused one, for the teardown. */
    char db2[320];
    snprintf(db2, sizeof(db2), "%s/second.db", f->dir);
    f->st = store_open(db2, &err);
    assert_non_null(f->st);
    assert_int_equal(store_schema_version(f->st), STORE_SCHEMA_VERSION);
}

/* ---- M2: group commit ------------------------------------------------------------------------ */

/* PRAGMA synchronous of f's connection: 1 NORMAL, 2 FULL. */
static int sync_pragma(struct fx *f)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->st), "PRAGMA synchronous",
                                        -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* A grouped transaction commits at NORMAL (the group's sync covers it).
 * SQLite prepares PRAGMA synchronous again at each run, so the connection
 * stays at NORMAL for the next grouped transaction (main put it back to
 * FULL after each: two PRAGMAs prepared per transaction), and is back at
 * FULL before anything that may write runs alone, through a cached
 * statement or any SQL. */
static void test_m2_sync_level_changes_only_for_a_write_alone(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    assert_int_equal(sync_pragma(f), 2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_tx_begin(f->st, &err), 0);
        assert_int_equal(sync_pragma(f), 1);
        assert_int_equal(store_tx_commit(f->st, &err), 0);
        assert_int_equal(sync_pragma(f), 1);
    }
    char *v = NULL;             /* a read alone: no change */
    assert_int_equal(store_setting_get(f->st, "nothing", &v, &err), 0);
    free(v);
    assert_int_equal(sync_pragma(f), 1);
    assert_int_equal(store_setting_set(f->st, "k", "v", &err), 0);
    assert_int_equal(sync_pragma(f), 2);        /* wrote at FULL */
    assert_int_equal(store_tx_begin(f->st, &err), 0);
    assert_int_equal(store_tx_commit(f->st, &err), 0);
    assert_int_equal(sync_pragma(f), 1);
    assert_int_equal(store_exec(f->st, "DELETE FROM settings WHERE key = 'k'",
                                &err), 0);
    assert_int_equal(sync_pragma(f), 2);
}

#define BURST 500

static void test_m2_group_commit_batch(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    static char ids[BURST][ID_LEN + 1];
    static char names[BURST][32];
    static struct store_message msgs[BURST];
    static struct store_new items[BURST];
    for (size_t i = 0; i < BURST; i++) {
        id_new(ids[i]);
        snprintf(names[i], sizeof(names[i]), "f%03zu.edi", i);
        msgs[i] = msg_make(ids[i], "inbox", names[i], names[i]);
        memset(&items[i], 0, sizeof(items[i]));
        items[i].msg = &msgs[i];
        items[i].next = next;
        items[i].nnext = 1;
    }
    struct error err = {0};
    assert_int_equal(store_intake(f->st, items, BURST, &err), 0);
    for (size_t i = 0; i < BURST; i++)
        assert_int_equal(items[i].duplicate, 0);

    struct store_message *list;
    size_t n;
    assert_int_equal(store_message_list(f->st, NULL, 10000, 0, &list, &n, &err), 0);
    assert_int_equal(n, BURST);
    store_messages_free(list, n);
    int64_t q, p, r, s, fl;
    assert_int_equal(store_hop_counts(f->st, &q, &p, &r, &s, &fl, &err), 0);
    assert_int_equal(q, BURST);
    for (size_t i = 0; i < BURST; i += 97)
        assert_string_equal(msg_state(f->st, ids[i]), "queued");

    /* The whole burst is one transaction: if its last item fails, none of
     * it is stored (here: a hop without a connector violates NOT NULL). */
    static char ids2[BURST][ID_LEN + 1];
    const char *broken[] = { NULL };
    for (size_t i = 0; i < BURST; i++) {
        id_new(ids2[i]);
        msgs[i] = msg_make(ids2[i], "inbox", names[i], NULL);
        items[i].duplicate = 0;
    }
    items[BURST - 1].next = broken;
    assert_int_equal(store_intake(f->st, items, BURST, &err), -1);
    assert_non_null(strstr(err.msg, "insert hop"));
    assert_int_equal(store_message_list(f->st, NULL, 10000, 0, &list, &n, &err), 0);
    assert_int_equal(n, BURST);
    store_messages_free(list, n);
    struct store_message m;
    assert_int_equal(store_message_get(f->st, ids2[0], &m, &err), 1);
    store_message_clear(&m);

    /* The store is usable after the rollback; the same burst again is
     * all duplicates. */
    for (size_t i = 0; i < BURST; i++) {
        msgs[i] = msg_make(ids2[i], "inbox", names[i], names[i]);
        items[i].next = next;
    }
    assert_int_equal(store_intake(f->st, items, BURST, &err), 0);
    for (size_t i = 0; i < BURST; i++) {
        assert_int_equal(items[i].duplicate, 1);
        assert_string_equal(items[i].existing_id, ids[i]);
    }
}

/* R15: sealed connector secrets are replaced by each flow put (imported
 * rows) or kept ("state:" rows), and go with their connector. */
static void test_r15_connector_secrets_follow_the_flow(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_connector c[] = { { "a", "file", "{}" }, { "b", "file", "{}" } };
    unsigned char b1[] = "blob-1", b2[] = "blob-2";
    struct store_secret sec[] = {
        { "a", "auth.password_file", b1, 6, 0 },
        { "b", "key_file", b2, 6, 0 },
    };
    struct store_flow put = { .conns = c, .nconns = 2, .secrets = sec,
                              .nsecrets = 2 };
    assert_int_equal(store_flow_put(f->st, &put, &err), 0);
    assert_int_equal(store_csecret_put(f->st, "a", "state:oauth.refresh", b2,
                                       6, 1234, &err), 0);
    unsigned char *blob = NULL;
    size_t len = 0;
    int64_t exp = 0;
    assert_int_equal(store_csecret_get(f->st, "a", "auth.password_file",
                                       &blob, &len, &exp, &err), 1);
    assert_int_equal(len, 6);
    assert_memory_equal(blob, "blob-1", 6);
    free(blob);

    /* Re-import with only "a" and no secrets: imported rows go, the state
     * row of "a" stays, everything of "b" goes. */
    struct store_flow put2 = { .conns = c, .nconns = 1 };
    assert_int_equal(store_flow_put(f->st, &put2, &err), 0);
    assert_int_equal(store_csecret_get(f->st, "a", "auth.password_file",
                                       &blob, &len, NULL, &err), 0);
    assert_int_equal(store_csecret_get(f->st, "b", "key_file", &blob, &len,
                                       NULL, &err), 0);
    assert_int_equal(store_csecret_get(f->st, "a", "state:oauth.refresh",
                                       &blob, &len, &exp, &err), 1);
    assert_true(exp == 1234);
    free(blob);
    assert_int_equal(store_csecret_del(f->st, "a", NULL, &err), 0);
    assert_int_equal(store_csecret_get(f->st, "a", "state:oauth.refresh",
                                       &blob, &len, NULL, &err), 0);
}

/* M5: one connector's config changes in place (host key confirmed), only
 * if it is still what the caller read; its secrets, links and the other
 * connectors stay; the flow generation moves. */
static void test_m5_connector_config_set(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_connector c[] = { { "in", "file", "{\"receive_dir\":\"/i\"}" },
                                   { "up", "sftp", "{\"host\":\"h\"}" } };
    struct store_link l[] = { { "in", "up" } };
    unsigned char b1[] = "blob-1";
    struct store_secret sec[] = { { "up", "key_file", b1, 6, 0 } };
    struct store_flow put = { .conns = c, .nconns = 2, .links = l, .nlinks = 1,
                              .secrets = sec, .nsecrets = 1 };
    assert_int_equal(store_flow_put(f->st, &put, &err), 0);
    int64_t gen = store_flow_generation(f->st, &err);
    const char *pinned = "{\"host\":\"h\",\"host_key_sha256\":\"SHA256:x\"}";
    /* not what it was: nothing written */
    assert_int_equal(store_connector_config_set(f->st, "up", "{}", pinned,
                                                &err), 1);
    assert_int_equal(store_connector_config_set(f->st, "nope", c[1].config,
                                                pinned, &err), 1);
    assert_true(store_flow_generation(f->st, &err) == gen);
    assert_int_equal(store_connector_config_set(f->st, "up", c[1].config,
                                                pinned, &err), 0);
    assert_true(store_flow_generation(f->st, &err) == gen + 1);
    struct store_flow got;
    assert_int_equal(store_flow_get(f->st, &got, &err), 0);
    assert_int_equal(got.nconns, 2);
    assert_string_equal(got.conns[0].config, c[0].config);
    assert_string_equal(got.conns[1].config, pinned);
    assert_int_equal(got.nlinks, 1);
    store_flow_clear(&got);
    unsigned char *blob = NULL;
    size_t len = 0;
    assert_int_equal(store_csecret_get(f->st, "up", "key_file", &blob, &len,
                                       NULL, &err), 1);
    free(blob);
}

/* ---- issue items 12, 16, 6: lanes, waiting, refusals ------------------- */

/* call must return 0; err (in scope) says why not */
#define MUST(call, e) do { if ((call) != 0) fail_msg("%s: %s", #call, \
                                                   (e).msg); } while (0)

/* M7: a certificate added on its own (with the partner's new config, or
 * the profile's with its sealed key) is listed by owner, moves the flow
 * generation, and a second add of the same certificate keeps one row;
 * receipts (raw MDNs) of a message come back oldest first, with or without
 * their headers and body. */
static void test_m7_certs_added_and_receipts_kept(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_partner pa[] = { { "acme", "ACME-AS2", "{}" } };
    struct store_flow put = { .partners = pa, .npartners = 1,
                              .profile = (char *)"{\"as2_id\":\"WHARF\"}" };
    MUST(store_flow_put(f->st, &put, &err), err);
    int64_t gen = store_flow_generation(f->st, &err);
    unsigned char der[] = { 0x30, 0x00, 0x01, 0x02 }, key[] = { 9, 0, 8 };
    struct store_cert c = { .owner = (char *)"acme",
                            .subject = (char *)"CN=acme",
                            .not_before = 1000, .not_after = 2000,
                            .der = der, .der_len = sizeof(der) };
    snprintf(c.id, sizeof(c.id), "%064d", 1);
    MUST(store_cert_add(f->st, &c, "{\"cert\":\"a.pem\"}", &err), err);
    MUST(store_cert_add(f->st, &c, NULL, &err), err);
    struct store_cert mine = c;
    mine.owner = (char *)"";
    mine.subject = (char *)"CN=wharf";
    mine.key = key;
    mine.key_len = sizeof(key);
    MUST(store_cert_add(f->st, &mine, "{\"as2_id\":\"WHARF2\"}", &err), err);
    assert_true(store_flow_generation(f->st, &err) == gen + 3);
    struct store_cert *got;
    size_t n;
    MUST(store_certs_list(f->st, "acme", 1, &got, &n, &err), err);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].subject, "CN=acme");
    assert_string_equal(got[0].id, c.id);
    assert_int_equal(got[0].der_len, sizeof(der));
    assert_memory_equal(got[0].der, der, sizeof(der));
    assert_null(got[0].key);
    assert_true(got[0].not_after == 2000);
    store_certs_free(got, n);
    MUST(store_certs_list(f->st, "", 1, &got, &n, &err), err);
    assert_int_equal(n, 1);
    assert_int_equal(got[0].key_len, sizeof(key));
    assert_memory_equal(got[0].key, key, sizeof(key));
    store_certs_free(got, n);
    MUST(store_certs_list(f->st, NULL, 0, &got, &n, &err), err);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].owner, "");
    assert_null(got[0].key);
    store_certs_free(got, n);
    struct store_flow fl;
    MUST(store_flow_get(f->st, &fl, &err), err);
    assert_string_equal(fl.profile, "{\"as2_id\":\"WHARF2\"}");
    assert_string_equal(fl.partners[0].config, "{\"cert\":\"a.pem\"}");
    store_flow_clear(&fl);

    unsigned char body[] = { 'M', 0, 'D', 'N' };
    struct store_receipt r1 = { .message_id = (char *)ID1,
        .direction = (char *)"received", .at = 5,
        .as2_message_id = (char *)"<mdn@acme>",
        .original_message_id = (char *)"<1@wharf>",
        .headers = (char *)"Content-Type: x\r\n", .body = body,
        .len = sizeof(body) };
    struct store_receipt r2 = { .message_id = (char *)ID1,
        .direction = (char *)"sent", .at = 6, .headers = (char *)"" };
    MUST(store_receipt_add(f->st, &r1, &err), err);
    MUST(store_receipt_add(f->st, &r2, &err), err);
    struct store_receipt *rr;
    MUST(store_receipts_list(f->st, ID1, 1, &rr, &n, &err), err);
    assert_int_equal(n, 2);
    assert_string_equal(rr[0].direction, "received");
    assert_string_equal(rr[0].as2_message_id, "<mdn@acme>");
    assert_string_equal(rr[0].headers, "Content-Type: x\r\n");
    assert_int_equal(rr[0].len, sizeof(body));
    assert_memory_equal(rr[0].body, body, sizeof(body));
    assert_true(rr[0].at == 5 && rr[0].id < rr[1].id);
    assert_null(rr[1].as2_message_id);
    assert_null(rr[1].body);
    assert_int_equal(rr[1].len, 0);
    store_receipts_free(rr, n);
    MUST(store_receipts_list(f->st, ID1, 0, &rr, &n, &err), err);
    assert_int_equal(n, 2);
    assert_null(rr[0].headers);
    assert_null(rr[0].body);
    store_receipts_free(rr, n);
    MUST(store_receipts_list(f->st, "nope", 1, &rr, &n, &err), err);
    assert_int_equal(n, 0);
    store_receipts_free(rr, n);
}


/* Hops queued before hops carried their message's size (SQLite's
 * migration 13, PostgreSQL's 6) get it when the store is opened: a large
 * message queued then is leased by the large lane, not the small one. */
static void test_m4_migration_gives_old_hops_their_size(void **state)
{
    struct fx *f = *state;
    queue_hops(f->st, 1, LARGE_SIZE);
    queue_hops(f->st, 1, 0);
    store_close(f->st);
    f->st = NULL;
    raw_exec(f, g_pg ? "BEGIN; DROP INDEX hops_large;"
                       " ALTER TABLE hops DROP COLUMN size;"
                       " DELETE FROM schema_version WHERE version = 6;"
                       " COMMIT"
                     : "BEGIN; DROP INDEX hops_large;"
                       " ALTER TABLE hops DROP COLUMN size;"
                       " DELETE FROM schema_version WHERE version = 13;"
                       " COMMIT");
    struct error err = {0};
    if ((f->st = store_open(f->db, &err)) == NULL)
        fail_msg("reopen: %s", err.msg);
    struct store_hop *h = NULL;
    size_t n = 0;
    MUST(store_hop_lease_lane(f->st, "w", time_now_ms(), 60000, 10,
                              &LARGE_LANE, &h, &n, &err), err);
    assert_int_equal(n, 1);
    struct store_message m;
    MUST(store_message_get(f->st, h[0].message_id, &m, &err), err);
    assert_int_equal(m.size, LARGE_SIZE);
    store_message_clear(&m);
    store_hops_free(h, n);
    MUST(store_hop_lease_lane(f->st, "w", time_now_ms(), 60000, 10,
                              &SMALL_LANE, &h, &n, &err), err);
    assert_int_equal(n, 1);
    store_hops_free(h, n);
}

/* Item 12: a lane leases only the hops of its message sizes. */
static void test_m4_lease_lane_by_message_size(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "out" };
    struct store_message big = msg_make("01900000-0000-7000-8000-00000000000b",
                                        "in", "big.bin", NULL);
    big.size = 20LL << 20;
    struct store_new it = { .msg = &big, .next = next, .nnext = 1 };
    struct error err = {0};
    MUST(store_intake(f->st, &it, 1, &err), err);
    intake1(f->st, "01900000-0000-7000-8000-00000000000a", "in", next, 1);
    struct store_lane small = { 0, (8LL << 20) - 1 }, large = { 8LL << 20,
                                                               INT64_MAX };
    struct store_hop *h = NULL;
    size_t n = 0;
    MUST(store_hop_lease_lane(f->st, "w1", time_now_ms(), 60000, 10, &small,
                              &h, &n, &err), err);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].message_id,
                        "01900000-0000-7000-8000-00000000000a");
    store_hops_free(h, n);
    MUST(store_hop_lease_lane(f->st, "w2", time_now_ms(), 60000, 10, &small,
                              &h, &n, &err), err);
    assert_int_equal(n, 0);
    store_hops_free(h, n);
    MUST(store_hop_lease_lane(f->st, "w3", time_now_ms(), 60000, 10, &large,
                              &h, &n, &err), err);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].message_id,
                        "01900000-0000-7000-8000-00000000000b");
    store_hops_free(h, n);
}

/* Item 16: a wait keeps the attempts, sets no error, writes its event
 * only when it has a text; it is due again at its next_at (an MDN's
 * arrival settles it through its job: test_jobs.c). */
static void test_m4_hop_wait_is_not_an_attempt(void **state)
{
    struct fx *f = *state;
    const char *id = "01900000-0000-7000-8000-0000000000c1";
    const char *next[] = { "as2-b" };
    intake1(f->st, id, "in", next, 1);
    struct store_hop *h;
    assert_int_equal(lease_now(f->st, "w1", 60000, &h), 1);
    struct store_outcome o = outcome(&h[0], "w1", HOP_WAIT);
    o.attempts = h[0].attempts;
    o.next_at = time_now_ms() + 3600000;
    o.receipt = "HTTP 200: sent as <x@wharf>; waiting for the MDN";
    finish1(f->st, &o, 0);
    store_hops_free(h, 1);
    assert_int_equal(count_events(f->st, id, "info", "waiting for the MDN"),
                     1);
    struct store_hop *all;
    size_t n;
    struct error err = {0};
    MUST(store_message_hops(f->st, id, &all, &n, &err), err);
    assert_string_equal(all[1].state, "retrying");
    assert_int_equal(all[1].attempts, 0);
    assert_null(all[1].last_error);
    assert_null(all[1].receipt);
    store_hops_free(all, n);
    assert_string_equal(msg_state(f->st, id), "retrying");
    /* not due: nothing to lease; due at its next_at */
    assert_int_equal(lease_now(f->st, "w1", 60000, &h), 0);
    store_hops_free(h, 0);
    MUST(store_hop_lease(f->st, "w1", o.next_at + 1, 60000, 10, &h, &n,
                         &err), err);
    assert_int_equal(n, 1);
    /* a later look without text: no second event */
    o = outcome(&h[0], "w1", HOP_WAIT);
    o.attempts = h[0].attempts;
    o.next_at = time_now_ms() + 1000;
    finish1(f->st, &o, 0);
    store_hops_free(h, 1);
    assert_int_equal(count_events(f->st, id, NULL, "waiting"), 1);
}

/* Item 6: refusals of one source, address and reason fold into one
 * record while they keep coming; another reason or address is another
 * record. */
static void test_r22_refusals_fold_into_bursts(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    char id[ID_LEN + 1], first[ID_LEN + 1];
    int64_t count = 0;
    struct store_refusal r = { "as2-a", "192.0.2.7", "decryption-failed",
                               "AS2 message <1@x> refused", 600000 };
    MUST(store_refusal_record(f->st, &r, first, &count, &err), err);
    assert_int_equal(count, 1);
    for (int i = 2; i <= 50; i++) {
        r.text = i == 50 ? "AS2 message <50@x> refused" : "AS2 message";
        MUST(store_refusal_record(f->st, &r, id, &count, &err), err);
        assert_int_equal(count, i);
        assert_string_equal(id, first);
    }
    assert_string_equal(msg_state(f->st, first), "refused");
    assert_int_equal(count_events(f->st, first, "error", NULL), 2);
    assert_int_equal(count_events(f->st, first, NULL,
                                  "refused 50 times in all from 192.0.2.7 "
                                  "(decryption-failed), the last one: AS2 "
                                  "message <50@x>"), 1);
    r.reason = "authentication-failed";
    MUST(store_refusal_record(f->st, &r, id, &count, &err), err);
    assert_int_equal(count, 1);
    assert_string_not_equal(id, first);
    r.reason = "decryption-failed";
    r.address = "192.0.2.8";
    MUST(store_refusal_record(f->st, &r, id, &count, &err), err);
    assert_int_equal(count, 1);
    /* a burst ends after window_ms without one */
    r.address = "192.0.2.7";
    r.window_ms = 0;
    usleep(2000);
    MUST(store_refusal_record(f->st, &r, id, &count, &err), err);
    assert_int_equal(count, 1);
    assert_string_not_equal(id, first);
    struct store_message *all;
    size_t n;
    MUST(store_message_list(f->st, "refused", 100, 0, &all, &n, &err), err);
    assert_int_equal(n, 4);
    store_messages_free(all, n);
}


/* ---- R21: several connections (nodes) on one database --------------------------------------- */

#define NODES 3
#define SHARED 300
#define REFUSALS 100

struct node_run {
    const char *db;
    char owner[16];
    int64_t ids[SHARED];
    size_t n;
    const struct store_outcome *o;      /* finish_each: what to commit */
    size_t no;
    char err[300];
};

/* A node: its own connection, leasing 7 at a time until nothing is due. */
static void *lease_each(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    for (int done = st == NULL; !done;) {
        struct store_hop *h = NULL;
        size_t n = 0;
        if (store_hop_lease(st, r->owner, time_now_ms(), 60000, 7, &h, &n,
                            &err) != 0)
            break;
        for (size_t i = 0; i < n && r->n < SHARED; i++)
            r->ids[r->n++] = h[i].id;
        store_hops_free(h, n);
        done = n == 0;
    }
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Intake count messages from inbox, each with one hop to every `next`. */
static void intake_many(struct store *st, size_t count,
                        const char *const *next, size_t nnext)
{
    static char ids[SHARED][ID_LEN + 1];
    struct store_message *m = calloc(count, sizeof(*m));
    struct store_new *it = calloc(count, sizeof(*it));
    assert_true(m && it && count <= SHARED);
    for (size_t i = 0; i < count; i++) {
        snprintf(ids[i], sizeof(ids[i]), "01900000-0000-7000-8000-%012zu", i);
        m[i] = msg_make(ids[i], "inbox", "a.edi", NULL);
        it[i] = (struct store_new){ .msg = &m[i], .next = next,
                                    .nnext = nnext };
    }
    struct error err = {0};
    MUST(store_intake(st, it, count, &err), err);
    free(m);
    free(it);
}

static void test_r21_nodes_leasing_together_never_share_a_hop(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    intake_many(f->st, SHARED, next, 1);
    struct node_run runs[NODES];
    pthread_t th[NODES];
    memset(runs, 0, sizeof(runs));
    for (int i = 0; i < NODES; i++) {
        runs[i].db = f->db;
        snprintf(runs[i].owner, sizeof(runs[i].owner), "node%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, lease_each, &runs[i]), 0);
    }
    static int64_t all[SHARED * NODES];
    size_t total = 0;
    for (int i = 0; i < NODES; i++) {
        pthread_join(th[i], NULL);
        if (runs[i].err[0])
            fail_msg("%s: %s", runs[i].owner, runs[i].err);
        memcpy(all + total, runs[i].ids, runs[i].n * sizeof(int64_t));
        total += runs[i].n;
    }
    /* every hop leased, none twice */
    assert_int_equal(total, SHARED);
    qsort(all, total, sizeof(all[0]), cmp_i64);
    for (size_t i = 1; i < total; i++)
        assert_true(all[i] != all[i - 1]);
    int64_t q, p, r, sent, fl;
    struct error err = {0};
    MUST(store_hop_counts(f->st, &q, &p, &r, &sent, &fl, &err), err);
    assert_int_equal(p, SHARED);
    assert_int_equal(q, 0);
}

/* A node committing outcomes one at a time on its own connection. */
static void *finish_each(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    for (size_t i = 0; st && i < r->no; i++) {
        size_t skipped = 0;
        if (store_hop_finish(st, &r->o[i], 1, &skipped, &err) != 0)
            break;
        if (skipped) {
            error_set(&err, "hop %lld skipped", (long long)r->o[i].hop_id);
            break;
        }
    }
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes finish the two hops of each message at the same time: the
 * message's state is computed from both, never from a view missing one. */
static void test_r21_nodes_finishing_one_message_agree_on_its_state(void **state)
{
    struct fx *f = *state;
    enum { MSGS = 120 };
    const char *next[] = { "a", "b" };
    intake_many(f->st, MSGS, next, 2);
    struct store_hop *h = NULL;
    size_t n = 0;
    struct error err = {0};
    MUST(store_hop_lease(f->st, "w", time_now_ms(), 600000, 2 * MSGS, &h, &n,
                         &err), err);
    assert_int_equal(n, 2 * MSGS);
    static struct store_outcome oa[MSGS], ob[MSGS];
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        struct store_outcome o = outcome(&h[i], "w", HOP_SENT);
        if (strcmp(h[i].connector, "a") == 0)
            oa[na++] = o;
        else
            ob[nb++] = o;
    }
    assert_int_equal(na, MSGS);
    assert_int_equal(nb, MSGS);
    struct node_run runs[2];
    pthread_t th[2];
    memset(runs, 0, sizeof(runs));
    runs[0] = (struct node_run){ .db = f->db, .o = oa, .no = na };
    runs[1] = (struct node_run){ .db = f->db, .o = ob, .no = nb };
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, finish_each, &runs[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (runs[i].err[0])
            fail_msg("node %d: %s", i, runs[i].err);
    }
    struct store_message *all;
    size_t nm;
    MUST(store_message_list(f->st, NULL, 1000, 0, &all, &nm, &err), err);
    assert_int_equal(nm, MSGS);
    for (size_t i = 0; i < nm; i++)
        if (strcmp(all[i].state, "sent") != 0)
            fail_msg("message %s is %s with both hops sent", all[i].id,
                     all[i].state);
    store_messages_free(all, nm);
    store_hops_free(h, n);
}

/* ---- R21: the nodes a database serves (node_store.h) ---------------------------------------- */

static void test_r21_nodes_beat_and_show_their_leases(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    int64_t now = time_now_ms();
    struct store_node a = { .id = "host-a/101", .address = "admin x",
                            .version = "1", .started_at = now - 10,
                            .seen_at = now, .beat_ms = 1000 };
    struct store_node b = a;
    b.id = (char *)"host-b/202";
    b.started_at = now - 5;
    MUST(store_node_beat(f->st, &a, &err), err);
    MUST(store_node_beat(f->st, &b, &err), err);
    a.seen_at = now + 1000;
    a.started_at = now + 999;       /* a later beat keeps the first start */
    MUST(store_node_beat(f->st, &a, &err), err);
    const char *next[] = { "outbox" };
    intake_many(f->st, 3, next, 1);
    struct store_hop *h = NULL;
    size_t n = 0;
    MUST(store_hop_lease(f->st, "host-a/101/w0/b1", time_now_ms(), 60000, 2,
                         &h, &n, &err), err);
    store_hops_free(h, n);
    /* another node whose id is a prefix of a's is not given a's leases */
    struct store_node c = a;
    c.id = (char *)"host-a/10";
    MUST(store_node_beat(f->st, &c, &err), err);
    MUST(store_node_stopped(f->st, "host-b/202", now + 50, &err), err);
    struct store_node *all = NULL;
    size_t count = 0;
    MUST(store_nodes(f->st, &all, &count, &err), err);
    assert_int_equal(count, 3);
    int seen = 0;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(all[i].id, "host-a/101") == 0) {
            assert_int_equal(all[i].leases, 2);
            assert_true(all[i].started_at == now - 10);
            assert_true(all[i].seen_at == now + 1000);
            assert_true(all[i].stopped_at == 0);
            seen++;
        } else if (strcmp(all[i].id, "host-b/202") == 0) {
            assert_int_equal(all[i].leases, 0);
            assert_true(all[i].stopped_at == now + 50);
            seen++;
        } else {
            assert_string_equal(all[i].id, "host-a/10");
            assert_int_equal(all[i].leases, 0);
            seen++;
        }
    }
    assert_int_equal(seen, 3);
    store_nodes_free(all, count);
}

/* The record of backup runs that the posture report and doctor read is
 * kept by both backends. */
static void test_r20_backup_runs_are_recorded(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_backup_row ok = { .started_at = 1000, .finished_at = 2000,
                                   .ok = 1, .location = "/b/one.wbk",
                                   .bytes = 4096, .kind = "recipient",
                                   .backup_id = "bk-1", .messages = 7,
                                   .payloads = 6, .missing = 1,
                                   .sha256 = "ab" };
    struct store_backup_row bad = { .started_at = 3000, .finished_at = 3100,
                                    .error = "disk full" };
    MUST(store_backup_record(f->st, &ok, &err), err);
    MUST(store_backup_record(f->st, &bad, &err), err);
    struct store_backup_item *it = NULL;
    size_t n = 0;
    MUST(store_backup_list(f->st, 10, &it, &n, &err), err);
    assert_int_equal(n, 2);
    assert_int_equal(it[0].ok, 0);              /* newest first */
    assert_string_equal(it[0].error, "disk full");
    assert_string_equal(it[0].kind, "master-key");
    assert_null(it[0].location);
    assert_int_equal(it[1].ok, 1);
    assert_string_equal(it[1].location, "/b/one.wbk");
    assert_true(it[1].bytes == 4096 && it[1].messages == 7 &&
                it[1].payloads == 6 && it[1].missing == 1);
    store_backup_items_free(it, n);
    assert_int_equal(store_backup_list(f->st, 0, &it, &n, &err), -1);
}

/* A node recording refusals of one client on its own connection. */
struct refusal_run {
    const char *db;
    int64_t counts[REFUSALS];
    char ids[REFUSALS][ID_LEN + 1];
    char err[300];
};

static void *refuse_each(void *arg)
{
    struct refusal_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    struct store_refusal rf = { "as2-a", "192.0.2.9", "decryption-failed",
                                "AS2 message refused", 3600000 };
    for (int i = 0; st && i < REFUSALS; i++)
        if (store_refusal_record(st, &rf, r->ids[i], &r->counts[i],
                                 &err) != 0)
            break;
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes refused by the same client for the same reason at the same
 * time: one burst, counted once per refusal (each node gets a different
 * count back: 1 .. all of them), with its two events. */
static void test_r21_nodes_refused_together_fold_into_one_burst(void **state)
{
    struct fx *f = *state;
    static struct refusal_run runs[2];
    pthread_t th[2];
    memset(runs, 0, sizeof(runs));
    for (int i = 0; i < 2; i++) {
        runs[i].db = f->db;
        assert_int_equal(pthread_create(&th[i], NULL, refuse_each, &runs[i]),
                         0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (runs[i].err[0])
            fail_msg("node %d: %s", i, runs[i].err);
    }
    static int64_t all[2 * REFUSALS];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < REFUSALS; k++) {
            all[i * REFUSALS + k] = runs[i].counts[k];
            if (strcmp(runs[i].ids[k], runs[0].ids[0]) != 0)
                fail_msg("node %d, refusal %d: burst %s, not %s", i, k,
                         runs[i].ids[k], runs[0].ids[0]);
        }
    qsort(all, 2 * REFUSALS, sizeof(all[0]), cmp_i64);
    for (int k = 0; k < 2 * REFUSALS; k++)
        if (all[k] != k + 1)
            fail_msg("counts given back: #%d is %lld, not %d", k + 1,
                     (long long)all[k], k + 1);
    struct store_message *msgs;
    size_t n;
    struct error err = {0};
    MUST(store_message_list(f->st, "refused", 100, 0, &msgs, &n, &err), err);
    assert_int_equal(n, 1);
    store_messages_free(msgs, n);
    assert_int_equal(count_events(f->st, runs[0].ids[0], "error", NULL), 2);
    char want[100];
    snprintf(want, sizeof(want), "refused %d times in all", 2 * REFUSALS);
    assert_int_equal(count_events(f->st, runs[0].ids[0], NULL, want), 1);
}

/* One node at a time leads each cluster-wide job; when it closes its
 * store (the node stops) the next node that asks leads at once: the close
 * lets go of the locks, it does not wait for the server to notice the
 * disconnect. Each job is its own
 * lock: two nodes may lead different jobs. SQLite: the one node leads
 * every job. */
static void test_r21_one_node_leads_each_cluster_job(void **state)
{
    static const enum store_lead_job jobs[] = { STORE_LEAD_PURGE,
        STORE_LEAD_DETECT, STORE_LEAD_NOTIFY };
    struct fx *f = *state;
    struct error err = {0};
    struct store *b = store_open(f->db, &err);
    assert_non_null(b);
    for (size_t i = 0; i < 3; i++) {        /* a leads all, b none */
        assert_int_equal(store_lead(f->st, jobs[i], &err), 1);
        assert_int_equal(store_lead(f->st, jobs[i], &err), 1);
        assert_int_equal(store_lead(b, jobs[i], &err), g_pg ? 0 : 1);
    }
    store_close(f->st);                 /* the leading node is gone */
    f->st = store_open(f->db, &err);
    assert_non_null(f->st);
    /* b takes the notifier over first; a, back, gets the other two */
    assert_int_equal(store_lead(b, STORE_LEAD_NOTIFY, &err), 1);
    assert_int_equal(store_lead(f->st, STORE_LEAD_NOTIFY, &err),
                     g_pg ? 0 : 1);
    assert_int_equal(store_lead(f->st, STORE_LEAD_PURGE, &err), 1);
    assert_int_equal(store_lead(f->st, STORE_LEAD_DETECT, &err), 1);
    assert_int_equal(store_lead(b, STORE_LEAD_PURGE, &err), g_pg ? 0 : 1);
    assert_int_equal(store_lead(b, STORE_LEAD_DETECT, &err), g_pg ? 0 : 1);
    assert_int_equal(store_lead(b, STORE_LEAD_NOTIFY, &err), 1);
    store_close(b);
    assert_int_equal(store_lead(f->st, STORE_LEAD_NOTIFY, &err), 1);
}

/* One statement's answer on c, as a number (0 when empty). */
static long long pg_number(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                  ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

/* The shared buffers the store's statements touched to lease one hop of
 * lane (pg_stat_statements, which the test servers load: run-unit.sh). */
static long long pg_lease_blocks(struct fx *f, PGconn *c,
                                 const struct store_lane *lane)
{
    pg_number(c, "SELECT pg_stat_statements_reset()");
    lease_one(f->st, lane);
    return pg_number(c, "SELECT SUM(shared_blks_hit + shared_blks_read)"
                        " FROM pg_stat_statements s JOIN pg_database d"
                        " ON d.oid = s.dbid AND d.datname ="
                        " current_database()"
                        " WHERE s.query NOT LIKE '%pg_stat_statements%'");
}

/* The blocks of one lease of lane with 20 and with 2,020 small hops
 * queued first, after warm leases past the plan cache's first five
 * custom plans (a generic plan must not read the queue either). */
static void pg_lease_work(struct fx *f, const struct store_lane *lane,
                          long long *few, long long *many)
{
    PGconn *c = pg_connect(f->db);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    pg_number(c, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    queue_small_first(f, 20);
    pg_number(c, "ANALYZE hops");
    for (int i = 0; i < 7; i++)
        pg_lease_blocks(f, c, lane);
    *few = pg_lease_blocks(f, c, lane);
    queue_small_first(f, 2000);
    pg_number(c, "ANALYZE hops");
    *many = pg_lease_blocks(f, c, lane);
    PQfinish(c);
}

/* test_m2_lease_work_does_not_grow_with_the_queue on PostgreSQL, in
 * shared buffers (a scan and sort of every hop read them all: 740 ms per
 * lease with 100,000 queued). */
static void test_r21_pg_lease_work_does_not_grow_with_the_queue(void **state)
{
    long long few, many;
    pg_lease_work(*state, &SMALL_LANE, &few, &many);
    work_bounded("leasing one hop", "blocks", few, many);
}

/* test_m4_large_lane_lease_work_does_not_grow_with_small_ones on
 * PostgreSQL. */
static void test_r21_pg_large_lane_lease_work_does_not_grow_with_small_ones(
    void **state)
{
    struct fx *f = *state;
    long long few, many;
    queue_hops(f->st, 9, LARGE_SIZE);
    pg_lease_work(f, &LARGE_LANE, &few, &many);
    work_bounded("leasing one large hop", "blocks", few, many);
}

/* The client backends serving database db, as pids (at most max; not
 * an autovacuum worker, which may come and go meanwhile). */
static size_t pg_backends(const char *db, int *pids, size_t max)
{
    PGconn *c = PQconnectdb(getenv("WHARF_TEST_PG"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    const char *v[1] = { db };
    PGresult *r = PQexecParams(c, "SELECT pid FROM pg_stat_activity"
                               " WHERE datname = $1"
                               " AND backend_type = 'client backend'", 1,
                               NULL, v, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    size_t n = 0;
    for (int i = 0; i < PQntuples(r) && n < max; i++)
        pids[n++] = atoi(PQgetvalue(r, i, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

static int pid_in(int pid, const int *pids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid)
            return 1;
    return 0;
}

/* The value libpq settled on for option key of connection c. */
static void pg_option_is(PGconn *c, const char *key, const char *want)
{
    PQconninfoOption *o = PQconninfo(c);
    assert_non_null(o);
    const char *got = NULL;
    for (PQconninfoOption *i = o; i->keyword != NULL; i++)
        if (strcmp(i->keyword, key) == 0)
            got = i->val;
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("%s: %s, not %s", key, got ? got : "unset", want);
    PQconninfoFree(o);
}

/* Every connection notices a server that stopped answering within about
 * a minute (TCP keepalives, a user timeout), unless the store URL says
 * otherwise. */
static void test_r21_pg_connections_detect_a_dead_server(void **state)
{
    struct fx *f = *state;
    PGconn *c = pg_connect(f->db);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    pg_option_is(c, "keepalives", "1");
    pg_option_is(c, "keepalives_idle", "30");
    pg_option_is(c, "tcp_user_timeout", "60000");
    PQfinish(c);
    char url[400];
    snprintf(url, sizeof(url), "%s?keepalives_idle=5", f->db);
    c = pg_connect(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    pg_option_is(c, "keepalives_idle", "5");
    pg_option_is(c, "tcp_user_timeout", "60000");
    PQfinish(c);
}

/* The backends a test stopped, continued by the alarm that fails it, so
 * that the throwaway server can still be stopped after the failure. */
static volatile sig_atomic_t stalled_pids[64];
static volatile sig_atomic_t stalled_n;

static void stalled_alarm(int sig)
{
    static const char msg[] = "store_close hung on a stalled server\n";
    (void)sig;
    for (sig_atomic_t i = 0; i < stalled_n; i++)
        kill((pid_t)stalled_pids[i], SIGCONT);
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

/* A node stops (closes its store) even when its server has stopped
 * answering: closing lets go of the node's locks when the server
 * answers and does not wait for an answer that does not come. The
 * node's backends are stopped with SIGSTOP while it leads a job; the
 * alarm ends the test (fails it, the backends continued) if the close
 * hangs. */
static void test_r21_pg_close_does_not_wait_on_a_stalled_server(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    int before[64], after[64], stopped[64];
    size_t nb = pg_backends(f->pgname, before, 64);
    struct store *b = store_open(f->db, &err);
    assert_non_null(b);
    assert_int_equal(store_lead(b, STORE_LEAD_PURGE, &err), 1);
    size_t na = pg_backends(f->pgname, after, 64), ns = 0;
    for (size_t i = 0; i < na; i++)
        if (!pid_in(after[i], before, nb))
            stopped[ns++] = after[i];
    assert_true(ns >= 1);
    for (size_t i = 0; i < ns; i++)
        stalled_pids[i] = stopped[i];
    stalled_n = (sig_atomic_t)ns;
    void (*was)(int) = signal(SIGALRM, stalled_alarm);
    for (size_t i = 0; i < ns; i++)
        assert_int_equal(kill(stopped[i], SIGSTOP), 0);
    alarm(60);
    store_close(b);                     /* returns: the test goes on */
    alarm(0);
    signal(SIGALRM, was);
    stalled_n = 0;
    for (size_t i = 0; i < ns; i++)
        assert_int_equal(kill(stopped[i], SIGCONT), 0);
}

/* A hop held for an MDN (AS2) whose node never released it goes when the
 * hold is stale, with a warning event; a fresh hold stays. */
static void test_r21_stale_holds_are_released(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    const char *next[] = { "a", "b" };
    struct store_message m = msg_make(ID1, "as2in", "po.edi", NULL);
    struct store_new it = { .msg = &m, .next = next, .nnext = 2, .hold = 1 };
    MUST(store_intake(f->st, &it, 1, &err), err);
    int64_t t0 = time_now_ms();
    struct store_hop *h = NULL;
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 0);     /* held */
    store_hops_free(h, 0);
    int64_t n = -1;
    /* a hold younger than the cut stays */
    MUST(store_release_stale_holds(f->st, t0 - 60000, &n, &err), err);
    assert_int_equal(n, 0);
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 0);
    store_hops_free(h, 0);
    /* older than the cut: both hops go, one event for the message */
    usleep(2000);
    MUST(store_release_stale_holds(f->st, time_now_ms(), &n, &err), err);
    assert_int_equal(n, 2);
    assert_int_equal(count_events(f->st, ID1, "warning", "did not release"),
                     1);
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 2);
    store_hops_free(h, 2);
    MUST(store_release_stale_holds(f->st, time_now_ms(), &n, &err), err);
    assert_int_equal(n, 0);
}

/* Intake ID1 from an AS2 source, its one next hop held (for its MDN). */
static void intake_held(struct fx *f)
{
    struct error err = {0};
    const char *next[] = { "a" };
    struct store_message m = msg_make(ID1, "as2in", "po.edi", NULL);
    struct store_new it = { .msg = &m, .next = next, .nnext = 1, .hold = 1 };
    MUST(store_intake(f->st, &it, 1, &err), err);
}

/* At a node's start (serve), SQLite gives back every hold (one node: what a
 * crash left); PostgreSQL none (other nodes are answering their MDNs). */
static void test_r21_serve_start_releases_only_its_own_holds(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    intake_held(f);
    MUST(store_release_held(f->st, &err), err);
    struct store_hop *h = NULL;
    size_t n = lease_now(f->st, "w", 60000, &h);
    assert_int_equal(n, g_pg ? 0 : 1);
    store_hops_free(h, n);
}

/* An AS2 message's release keeps the MDN that went out in the same
 * transaction (one commit): both or neither. */
static void test_m4_release_keeps_the_mdn_in_the_same_transaction(
    void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    intake_held(f);
    struct store_receipt r = { .message_id = (char *)ID1,
        .direction = (char *)"sent", .at = time_now_ms(),
        .as2_message_id = (char *)"<mdn-1@b>",
        .original_message_id = (char *)"<msg-1@a>",
        .headers = NULL, .body = (unsigned char *)"MDN", .len = 3 };
    /* a receipt that cannot be kept (no headers): nothing released */
    assert_int_equal(store_message_release(f->st, ID1, "released", &r, NULL, &err),
                     -1);
    struct store_hop *h = NULL;
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 0);
    store_hops_free(h, 0);
    struct store_receipt *got = NULL;
    size_t n = 9;
    MUST(store_receipts_list(f->st, ID1, 1, &got, &n, &err), err);
    assert_int_equal(n, 0);
    store_receipts_free(got, n);
    r.headers = (char *)"Content-Type: multipart/report\r\n";
    MUST(store_message_release(f->st, ID1, "released", &r, NULL, &err), err);
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 1);
    store_hops_free(h, 1);
    MUST(store_receipts_list(f->st, ID1, 1, &got, &n, &err), err);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].direction, "sent");
    assert_string_equal(got[0].as2_message_id, "<mdn-1@b>");
    assert_int_equal(got[0].len, 3);
    assert_memory_equal(got[0].body, "MDN", 3);
    store_receipts_free(got, n);
    assert_int_equal(count_events(f->st, ID1, "info", "released"), 1);
}

/* An asynchronous MDN owed is queued with the release of its message
 * (one commit instead of two): the job and the release, both or
 * neither. */
static void test_m4_release_queues_the_owed_mdn_in_the_same_transaction(
    void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    intake_held(f);
    char id[ID_LEN + 1];
    id_new(id);
    struct store_job_new j = { .id = id, .message_id = ID1,
        .connector = NULL, .kind = "as2.mdn-out",
        .data = (const unsigned char *)"sealed", .data_len = 6,
        .level = "info", .text = "asynchronous MDN queued" };
    /* a job that cannot be added (no connector): nothing released */
    assert_int_equal(store_message_release(f->st, ID1, "released", NULL, &j,
                                           &err), -1);
    struct store_hop *h = NULL;
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 0);
    store_hops_free(h, 0);
    assert_int_equal(store_job_active(f->st, ID1, "as2", "as2.mdn-out", NULL,
                                      &err), 0);
    j.connector = "as2";
    MUST(store_message_release(f->st, ID1, "released", NULL, &j, &err), err);
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 1);
    store_hops_free(h, 1);
    char found[ID_LEN + 1];
    assert_int_equal(store_job_active(f->st, ID1, "as2", "as2.mdn-out", found,
                                      &err), 1);
    assert_string_equal(found, id);
    assert_int_equal(count_events(f->st, ID1, "info", "released"), 1);
    assert_int_equal(count_events(f->st, ID1, "info",
                                  "asynchronous MDN queued"), 1);
}

/* An AS2 message stored with its MDN and the asynchronous MDN's job in
 * one commit (the receiver's commit_answer): the message, its hops free
 * to go, the receipt, the job and the event, all or nothing; a duplicate
 * keeps none of them. */
static void test_m4_intake_keeps_its_mdn_and_job_in_the_same_commit(
    void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    static const char *ID2 = "01900000-0000-7000-8000-000000000002";
    const char *next[] = { "a" };
    char id[ID_LEN + 1];
    id_new(id);
    struct store_message m = msg_make(ID1, "as2in", "po.edi", "as2:<m1@a>");
    struct store_receipt r = { .message_id = (char *)ID1,
        .direction = (char *)"sent", .at = time_now_ms(),
        .as2_message_id = (char *)"<mdn-1@b>",
        .original_message_id = (char *)"<m1@a>", .headers = NULL,
        .body = (unsigned char *)"MDN", .len = 3 };
    struct store_job_new j = { .id = id, .message_id = ID1,
        .connector = "as2", .kind = "as2.mdn-out",
        .data = (const unsigned char *)"clear:x", .data_len = 7,
        .level = "info", .text = "asynchronous MDN queued" };
    struct store_new it = { .msg = &m, .next = next, .nnext = 1,
                            .kept = &r, .job = &j, .why = "kept with it" };
    /* a receipt that cannot be kept (no headers): nothing is stored */
    assert_int_equal(store_intake(f->st, &it, 1, &err), -1);
    struct store_message got;
    assert_int_equal(store_message_get(f->st, ID1, &got, &err), 1);
    assert_int_equal(store_job_active(f->st, ID1, "as2", "as2.mdn-out", NULL,
                                      &err), 0);
    r.headers = (char *)"Content-Type: multipart/report\r\n";
    MUST(store_intake(f->st, &it, 1, &err), err);
    assert_int_equal(it.duplicate, 0);
    struct store_hop *h = NULL;
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 1);     /* not held */
    store_hops_free(h, 1);
    struct store_receipt *rs = NULL;
    size_t n = 0;
    MUST(store_receipts_list(f->st, ID1, 1, &rs, &n, &err), err);
    assert_int_equal(n, 1);
    assert_string_equal(rs[0].as2_message_id, "<mdn-1@b>");
    store_receipts_free(rs, n);
    assert_int_equal(store_job_active(f->st, ID1, "as2", "as2.mdn-out", NULL,
                                      &err), 1);
    assert_int_equal(count_events(f->st, ID1, "info", "kept with it"), 1);
    assert_int_equal(count_events(f->st, ID1, "info", "held until"), 0);
    /* the same message again (another id): a duplicate, nothing kept */
    struct store_message m2 = msg_make(ID2, "as2in", "po.edi", "as2:<m1@a>");
    r.message_id = (char *)ID2;
    it.msg = &m2;
    id_new(id);
    j.message_id = ID2;
    MUST(store_intake(f->st, &it, 1, &err), err);
    assert_int_equal(it.duplicate, 1);
    assert_string_equal(it.existing_id, ID1);
    assert_int_equal(store_message_get(f->st, ID2, &got, &err), 1);
    MUST(store_receipts_list(f->st, ID2, 1, &rs, &n, &err), err);
    assert_int_equal(n, 0);
    store_receipts_free(rs, n);
    assert_int_equal(store_job_active(f->st, ID2, "as2", "as2.mdn-out", NULL,
                                      &err), 0);
}

/* The MDN that came back is recorded with the outcome of the hop it
 * confirms, in its transaction: both or neither (a lost lease records
 * neither; a receipt that cannot be kept leaves the hop unsent). */
static void test_m4_hop_outcome_keeps_its_mdn_both_or_neither(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    const char *next[] = { "partner" };
    intake1(f->st, ID1, "inbox", next, 1);
    struct store_hop *h = NULL;
    assert_int_equal(lease_now(f->st, "w", 60000, &h), 1);
    struct store_receipt r = fx_mdn_received(ID1);
    struct store_outcome o = { .hop_id = h[0].id, .message_id = ID1,
        .connector = "partner", .owner = "someone else", .result = HOP_SENT,
        .attempts = 1, .receipt = "MDN processed", .kept = &r };
    store_hops_free(h, 1);
    size_t skipped = 0;
    MUST(store_hop_finish(f->st, &o, 1, &skipped, &err), err);
    assert_int_equal(skipped, 1);
    fx_expect_receipts(f->st, ID1, 0);
    /* a receipt that cannot be kept (no headers): the hop is not sent */
    o.owner = "w";
    char *headers = r.headers;
    r.headers = NULL;
    assert_int_equal(store_hop_finish(f->st, &o, 1, &skipped, &err), -1);
    assert_string_not_equal(msg_state(f->st, ID1), "sent");
    r.headers = headers;
    MUST(store_hop_finish(f->st, &o, 1, &skipped, &err), err);
    assert_int_equal(skipped, 0);
    assert_string_equal(msg_state(f->st, ID1), "sent");
    fx_expect_receipts(f->st, ID1, 1);
}

/* ---- R21: PostgreSQL only --------------------------------------------------------------------- */

/* A node that starts (serve calls store_leases_release) gives back no lease
 * another node holds: on PostgreSQL a lease ends by expiring. */
static void test_r21_pg_node_start_takes_no_lease_of_another(void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);
    struct store_hop *h;
    assert_int_equal(lease_now(f->st, "node1", 3600 * 1000, &h), 1);
    store_hops_free(h, 1);
    struct error err = {0};
    struct store *node2 = store_open(f->db, &err);
    assert_non_null(node2);
    MUST(store_leases_release(node2, &err), err);
    assert_int_equal(lease_now(node2, "node2", 60000, &h), 0);
    store_hops_free(h, 0);
    store_close(node2);
    assert_string_equal(msg_state(f->st, ID1), "queued");
    int64_t q, p, r, s, fl;
    MUST(store_hop_counts(f->st, &q, &p, &r, &s, &fl, &err), err);
    assert_int_equal(p, 1);
}

static void *open_close(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    snprintf(r->err, sizeof(r->err), "%s", st ? "" : err.msg);
    store_close(st);
    return NULL;
}

static int pg_count(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, sql);
    int v = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0))
                                                 : -1;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* Nodes starting together on an empty database: one creates the schema,
 * each version is recorded once; a schema from a newer wharf is refused. */
static void test_r21_pg_schema_made_once_newer_refused(void **state)
{
    (void)state;
    struct fx g;
    memset(&g, 0, sizeof(g));
    test_pg_fresh(g.db, sizeof(g.db), g.pgname);
    struct node_run runs[4];
    pthread_t th[4];
    memset(runs, 0, sizeof(runs));
    for (int i = 0; i < 4; i++) {
        runs[i].db = g.db;
        assert_int_equal(pthread_create(&th[i], NULL, open_close, &runs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        if (runs[i].err[0])
            fail_msg("node %d: %s", i, runs[i].err);
    }
    int rows = pg_count(g.db, "SELECT COUNT(*) FROM schema_version");
    assert_true(rows >= 1);
    assert_int_equal(pg_count(g.db, "SELECT COUNT(DISTINCT version) FROM "
                              "schema_version"), rows);
    assert_int_equal(pg_count(g.db, "SELECT MAX(version) FROM "
                              "schema_version"), rows);
    assert_int_equal(pg_count(g.db, "SELECT COUNT(*) FROM settings WHERE "
                              "key = 'flow_generation'"), 1);
    PGconn *c = PQconnectdb(g.db);
    PQclear(PQexec(c, "INSERT INTO schema_version VALUES(999, 0)"));
    PQfinish(c);
    struct error err = {0};
    assert_null(store_open(g.db, &err));
    assert_non_null(strstr(err.msg, "schema version 999"));
    assert_non_null(strstr(err.msg, "upgrade wharf"));
    test_pg_drop(g.pgname);
}

/* The password of a store URL shows nowhere: not in the store's name, not
 * in the error of a failed connection. */
static void test_r21_pg_url_password_is_never_shown(void **state)
{
    struct fx *f = *state;
    const char *at = strchr(f->db + strlen("postgresql://"), '@');
    assert_non_null(at);
    char url[400];
    snprintf(url, sizeof(url), "postgresql://wharf:Hunter2-pw@%s", at + 1);
    struct error err = {0};
    /* a password in the URL is refused before any connection */
    assert_null(store_open(url, &err));
    assert_null(strstr(err.msg, "Hunter2-pw"));
    assert_non_null(strstr(err.msg, "pgpass"));
    /* the store's name: server and database, never user or parameters */
    assert_non_null(strstr(store_path(f->st), f->pgname));
    assert_null(strstr(store_path(f->st), "wharf@"));
    assert_null(store_open("postgresql://wharf@127.0.0.1:1/x"
                           "?connect_timeout=5", &err));
    assert_non_null(strstr(err.msg, "cannot connect"));
}

struct renew_probe {
    const char *db;
    atomic_int done;
    int rc;
    char err[256];
};

/* The lease keeper of "node1", on a connection of its own. */
static void *renew_probe(void *arg)
{
    struct renew_probe *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    r->rc = st ? store_leases_renew(st, "node1", time_now_ms() + 3600000,
                                    &err) : -1;
    snprintf(r->err, sizeof(r->err), "%s", r->rc < 0 ? err.msg : "");
    store_close(st);
    atomic_store(&r->done, 1);
    return NULL;
}

/* The lease keeper renews a worker's leases while the worker commits the
 * outcomes of some of those hops: the renewal skips a hop row the commit
 * holds instead of waiting for it. Waiting, with the rows it had renewed
 * so far locked, deadlocked with a commit that reached one of those next
 * (test_r21_three_nodes_2000_files_and_500_as2_through_two_kills: "renew
 * hop leases: ERROR: deadlock detected"; a commit PostgreSQL picks as the
 * victim leaves its batch to be delivered again). */
static void test_r21_pg_lease_renewal_skips_a_hop_being_finished(
    void **state)
{
    struct fx *f = *state;
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);
    intake1(f->st, "01900000-0000-7000-8000-000000000002", "inbox", next, 1);
    struct store_hop *h;
    assert_int_equal(lease_now(f->st, "node1", 60000, &h), 2);
    char held[32];
    snprintf(held, sizeof(held), "%lld", (long long)h[1].id);
    store_hops_free(h, 2);
    struct renew_probe probe = { .db = f->db };
    if (fx_pg_waits_on_row(f->db, "SELECT id FROM hops WHERE id = $1 FOR"
                           " UPDATE", held, renew_probe, &probe, &probe.done))
        fail_msg("the renewal waited for a hop its worker was finishing");
    if (probe.rc < 0)
        fail_msg("renew: %s", probe.err);
    /* the other hop's lease runs for an hour now, the held one's did not
     * change (the next renewal, a third of a lease later, extends it) */
    assert_int_equal(pg_count(f->db, "SELECT count(*) FROM hops WHERE"
                              " lease_until > (extract(epoch FROM now())"
                              " * 1000)::bigint + 1800000"), 1);
}

/* ---- R21: payloads kept in the database (payload_store.h) ---------------- */

#define PAY_NAMED "payloads/20261123/x.wpay"        /* msg_make's path */
#define PAY_OTHER "payloads/20261123/y.wpay"

/* n bytes that hold every byte value, 0x00 and the high ones included,
 * varied by seed; caller frees. */
static unsigned char *pay_bytes(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n ? n : 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 7 + seed) & 0xff);
    return b;
}

static const size_t PAY_LEN[] = { 92, 65536 + 16, 65536 + 16, 17 };
#define PAY_ROWS (sizeof(PAY_LEN) / sizeof(PAY_LEN[0]))

/* Rows 0..PAY_ROWS of path in one transaction; their bytes from
 * pay_bytes(PAY_LEN[seq], seq). */
static void pay_write(struct store *st, const char *path)
{
    struct error err = {0};
    MUST(store_payload_begin(st, 0, &err), err);
    for (size_t i = 0; i < PAY_ROWS; i++) {
        unsigned char *b = pay_bytes(PAY_LEN[i], (unsigned)i);
        MUST(store_payload_put(st, path, (int64_t)i, b, PAY_LEN[i], &err),
             err);
        free(b);
    }
    MUST(store_payload_commit(st, &err), err);
}

/* Row seq of path holds pay_bytes(n, seed). */
static void pay_expect_row(struct store *st, const char *path, int64_t seq,
                           size_t n, unsigned seed)
{
    unsigned char *b = NULL;
    size_t len = 0;
    struct error err = {0};
    int rc = store_payload_get(st, path, seq, &b, &len, &err);
    if (rc != 0)
        fail_msg("row %lld of %s: rc %d %s", (long long)seq, path, rc,
                 err.msg);
    assert_int_equal(len, n);
    unsigned char *want = pay_bytes(n, seed);
    assert_memory_equal(b, want, n);
    free(want);
    free(b);
}

/* The store has no row seq of path. */
static void pay_expect_none(struct store *st, const char *path, int64_t seq)
{
    unsigned char *b = (unsigned char *)"x";
    size_t len = 9;
    struct error err = {0};
    assert_int_equal(store_payload_get(st, path, seq, &b, &len, &err), 1);
    assert_null(b);
    assert_int_equal(len, 0);
}

/* Rows put in one transaction come back byte-identical (binary: 0x00 and
 * high bytes) on another connection, once committed; size is the sum of
 * their lengths; a row that exists is not put twice. */
static void test_r21_pg_payload_rows_round_trip(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    pay_write(f->st, PAY_NAMED);
    struct store *node2 = store_open(f->db, &err);
    assert_non_null(node2);
    MUST(store_payload_read_begin(node2, &err), err);
    for (size_t i = 0; i < PAY_ROWS; i++)
        pay_expect_row(node2, PAY_NAMED, (int64_t)i, PAY_LEN[i],
                       (unsigned)i);
    pay_expect_none(node2, PAY_NAMED, PAY_ROWS);
    pay_expect_none(node2, PAY_OTHER, 0);
    store_payload_read_end(node2);
    uint64_t size = 0, sum = 0;
    for (size_t i = 0; i < PAY_ROWS; i++)
        sum += PAY_LEN[i];
    assert_int_equal(store_payload_size(node2, PAY_NAMED, &size, &err), 0);
    assert_int_equal(size, sum);
    assert_int_equal(store_payload_size(node2, PAY_OTHER, &size, &err), 1);
    /* a row that exists: the put fails, its transaction is rolled back */
    MUST(store_payload_begin(node2, 1, &err), err);
    MUST(store_payload_put(node2, PAY_OTHER, 0, "hdr", 3, &err), err);
    assert_int_equal(store_payload_put(node2, PAY_NAMED, 1, "x", 1, &err),
                     -1);
    assert_true(err.msg[0] != '\0');
    store_payload_rollback(node2);
    assert_int_equal(store_payload_size(node2, PAY_OTHER, &size, &err), 1);
    pay_expect_row(node2, PAY_NAMED, 1, PAY_LEN[1], 1);
    store_close(node2);
}

/* The first statement of a reader: the first rows in order, clamped to
 * max, with the count of all; none for a payload that is not there. */
static void test_r21_pg_payload_head_reads_first_rows_and_count(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    unsigned char *rows[PAY_ROWS + 1] = {0};
    size_t lens[PAY_ROWS + 1];
    int got = 0;
    int64_t total = 0;
    pay_write(f->st, PAY_NAMED);
    for (int max = 1; max <= (int)PAY_ROWS + 1; max++) {
        got = 0;
        assert_int_equal(store_payload_head(f->st, PAY_NAMED, max, rows,
                                            lens, &got, &total, &err), 0);
        assert_int_equal(total, PAY_ROWS);
        assert_int_equal(got, max < (int)PAY_ROWS ? max : (int)PAY_ROWS);
        for (int i = 0; i < got; i++) {
            unsigned char *want = pay_bytes(PAY_LEN[i], (unsigned)i);
            assert_int_equal(lens[i], PAY_LEN[i]);
            assert_memory_equal(rows[i], want, lens[i]);
            free(want);
            free(rows[i]);
        }
    }
    got = 7;
    assert_int_equal(store_payload_head(f->st, PAY_OTHER, 3, rows, lens,
                                        &got, &total, &err), 1);
    assert_int_equal(got, 0);
    assert_int_equal(total, 0);
}

/* A writer rolled back leaves no row, and its connection goes on. */
static void test_r21_pg_payload_rollback_leaves_nothing(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    MUST(store_payload_begin(f->st, 1, &err), err);
    for (int64_t i = 0; i < 3; i++)
        MUST(store_payload_put(f->st, PAY_OTHER, i, "abc\0def", 7, &err),
             err);
    store_payload_rollback(f->st);
    uint64_t size = 99;
    assert_int_equal(store_payload_size(f->st, PAY_OTHER, &size, &err), 1);
    assert_int_equal(size, 0);
    assert_int_equal(pg_count(f->db, "SELECT COUNT(*) FROM payload_segments"),
                     0);
    pay_write(f->st, PAY_OTHER);
    assert_int_equal(pg_count(f->db, "SELECT COUNT(*) FROM payload_segments"),
                     (int)PAY_ROWS);
}

/* A reader's snapshot: rows deleted by another node meanwhile are still
 * read to the end; the next reader sees them gone. */
static void test_r21_pg_payload_reader_keeps_its_snapshot(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    pay_write(f->st, PAY_OTHER);
    struct store *node2 = store_open(f->db, &err);
    assert_non_null(node2);
    MUST(store_payload_read_begin(f->st, &err), err);
    pay_expect_row(f->st, PAY_OTHER, 0, PAY_LEN[0], 0);
    MUST(store_payload_delete(node2, PAY_OTHER, &err), err);
    for (size_t i = 1; i < PAY_ROWS; i++)
        pay_expect_row(f->st, PAY_OTHER, (int64_t)i, PAY_LEN[i],
                       (unsigned)i);
    store_payload_read_end(f->st);
    pay_expect_none(f->st, PAY_OTHER, 0);
    store_close(node2);
}

/* The header row replaced (rotation, erasure), the others untouched; a
 * missing row is not replaced; delete removes every row, and a missing
 * payload is no error. */
static void test_r21_pg_payload_replace_and_delete(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    pay_write(f->st, PAY_NAMED);
    pay_write(f->st, PAY_OTHER);
    unsigned char *hdr = pay_bytes(92, 200);
    assert_int_equal(store_payload_replace(f->st, PAY_NAMED, 0, hdr, 92,
                                           &err), 0);
    free(hdr);
    pay_expect_row(f->st, PAY_NAMED, 0, 92, 200);
    for (size_t i = 1; i < PAY_ROWS; i++)
        pay_expect_row(f->st, PAY_NAMED, (int64_t)i, PAY_LEN[i],
                       (unsigned)i);
    pay_expect_row(f->st, PAY_OTHER, 0, PAY_LEN[0], 0);
    assert_int_equal(store_payload_replace(f->st, PAY_NAMED, 99, "x", 1,
                                           &err), 1);
    pay_expect_none(f->st, PAY_NAMED, 99);
    MUST(store_payload_delete(f->st, PAY_NAMED, &err), err);
    uint64_t size;
    assert_int_equal(store_payload_size(f->st, PAY_NAMED, &size, &err), 1);
    assert_int_equal(store_payload_replace(f->st, PAY_NAMED, 0, "x", 1,
                                           &err), 1);
    MUST(store_payload_delete(f->st, PAY_NAMED, &err), err);
    assert_int_equal(store_payload_size(f->st, PAY_OTHER, &size, &err), 0);
}

/* The sweep deletes, whole, the payloads written before its cut that no
 * message names; a payload a message names, and one written after the
 * cut, are kept. */
static void test_r21_pg_payload_sweep_only_old_orphans(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);      /* names PAY_NAMED */
    pay_write(f->st, PAY_NAMED);
    pay_write(f->st, PAY_OTHER);
    int64_t cut = time_now_ms() + 1;
    while (time_now_ms() <= cut)
        usleep(1000);
    pay_write(f->st, "payloads/20261124/recent.wpay");
    int64_t n = -1;
    MUST(store_payload_sweep(f->st, cut, &n, &err), err);
    assert_int_equal(n, 1);
    uint64_t size;
    assert_int_equal(store_payload_size(f->st, PAY_OTHER, &size, &err), 1);
    assert_int_equal(store_payload_size(f->st, PAY_NAMED, &size, &err), 0);
    assert_int_equal(store_payload_size(f->st, "payloads/20261124/recent.wpay",
                                        &size, &err), 0);
    assert_int_equal(pg_count(f->db, "SELECT COUNT(*) FROM payload_segments"),
                     2 * (int)PAY_ROWS);
    MUST(store_payload_sweep(f->st, cut, &n, &err), err);
    assert_int_equal(n, 0);
    MUST(store_payload_sweep(f->st, time_now_ms() + 1, &n, &err), err);
    assert_int_equal(n, 1);                     /* recent, now old */
    assert_int_equal(store_payload_size(f->st, PAY_NAMED, &size, &err), 0);
}

/* A SQLite store keeps payload files: every payload_store.h call fails
 * with an error that says so (no crash), the sweep has nothing to do. */
static void test_r21_payload_rows_refused_on_sqlite(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    unsigned char *b = (unsigned char *)"x";
    size_t n = 5;
    uint64_t size = 0;
    int64_t deleted = -1;
#define REFUSED(call) do { memset(&err, 0, sizeof(err)); \
        assert_int_equal((call), -1); \
        if (strstr(err.msg, "PostgreSQL") == NULL) \
            fail_msg("%s: '%s'", #call, err.msg); } while (0)
    REFUSED(store_payload_begin(f->st, 1, &err));
    REFUSED(store_payload_put(f->st, PAY_NAMED, 0, "x", 1, &err));
    {
        unsigned char *rows[1];
        size_t lens[1];
        int got;
        int64_t total;
        REFUSED(store_payload_head(f->st, PAY_NAMED, 1, rows, lens, &got,
                                   &total, &err));
    }
    REFUSED(store_payload_commit(f->st, &err));
    store_payload_rollback(f->st);
    REFUSED(store_payload_read_begin(f->st, &err));
    REFUSED(store_payload_get(f->st, PAY_NAMED, 0, &b, &n, &err));
    assert_null(b);
    assert_int_equal(n, 0);
    store_payload_read_end(f->st);
    REFUSED(store_payload_size(f->st, PAY_NAMED, &size, &err));
    REFUSED(store_payload_replace(f->st, PAY_NAMED, 0, "x", 1, &err));
    REFUSED(store_payload_delete(f->st, PAY_NAMED, &err));
#undef REFUSED
    assert_int_equal(store_payload_sweep(f->st, time_now_ms(), &deleted,
                                         &err), 0);
    assert_int_equal(deleted, 0);
    const char *next[] = { "outbox" };
    intake1(f->st, ID1, "inbox", next, 1);      /* the store still works */
}

/* url refused by store_url_check, with an error that says want and
 * never shows secret. */
static void url_refused(const char *url, const char *want, const char *secret)
{
    struct error err = {0};
    if (store_url_check(url, &err) != -1)
        fail_msg("taken: %s", url);
    if (strstr(err.msg, want) == NULL)
        fail_msg("%s: '%s' lacks '%s'", url, err.msg, want);
    if (secret && strstr(err.msg, secret))
        fail_msg("%s: the error shows '%s'", url, secret);
}

static void url_taken(const char *url)
{
    struct error err = {0};
    if (store_url_check(url, &err) != 0)
        fail_msg("%s refused: %s", url, err.msg);
}

/* A database on this machine is reached as the URL says; one elsewhere
 * only over TLS that verifies it (sslmode=verify-full), and never below
 * TLS 1.2; no URL holds a password. libpq's PGHOST and PGSSLMODE count
 * where the URL names no host or mode. */
static void test_r21_store_url_rules(void **state)
{
    (void)state;
    unsetenv("PGHOST");
    unsetenv("PGSSLMODE");
    url_taken("sqlite");
    url_taken("postgresql://wharf@127.0.0.1:5432/db");
    url_taken("postgresql://wharf@127.8.9.10/db");
    url_taken("postgresql://wharf@localhost/db");
    url_taken("postgresql://wharf@[::1]:5432/db");
    url_taken("postgresql:///db?host=/var/run/postgresql");
    url_taken("postgresql:///db");
    url_taken("postgresql://wharf@db1.example.com/db?sslmode=verify-full"
              "&sslrootcert=/etc/wharf/db-ca.pem");
    url_taken("postgresql://wharf@db1:5432,db2:5432/db?target_session_attrs"
              "=read-write&sslmode=verify-full&sslrootcert=/ca.pem"
              "&ssl_min_protocol_version=TLSv1.3");
    url_refused("postgresql://wharf@db1.example.com/db", "verify-full", NULL);
    url_refused("postgresql://wharf@db1.example.com/db", "db1.example.com",
                NULL);
    url_refused("postgresql://wharf@10.0.0.7/db?sslmode=require",
                "not sslmode=require", NULL);
    url_refused("postgresql://wharf@db1/db?sslmode=verify-ca", "verify-full",
                NULL);
    url_refused("postgresql://wharf@127.0.0.1:1,db2.example.com:2/db",
                "db2.example.com", NULL);
    url_refused("postgresql://wharf@db1/db?hostaddr=127.0.0.1",
                "verify-full", NULL);
    url_refused("postgresql://wharf:S3cret-pw@127.0.0.1/db", "pgpass",
                "S3cret-pw");
    url_refused("postgresql://wharf@127.0.0.1/db?password=S3cret-pw",
                "pgpass", "S3cret-pw");
    url_refused("postgresql://wharf@127.0.0.1/db?ssl_min_protocol_version="
                "TLSv1.1", "below TLS 1.2", NULL);
    url_refused("postgresql://wharf:S3cret-pw@127.0.0.1/db?nonsense=1",
                "libpq", "S3cret-pw");
    setenv("PGHOST", "db9.example.com", 1);         /* libpq would use it */
    url_refused("postgresql:///db", "db9.example.com", NULL);
    setenv("PGSSLMODE", "verify-full", 1);
    url_taken("postgresql:///db");
    unsetenv("PGHOST");
    unsetenv("PGSSLMODE");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    /* the conformance tests: both backends */
#define CONFORMANCE \
        T(test_m1_intake_creates_message_hops_events), \
        T(test_m2_dedup_same_source_key), \
        T(test_m1_lease_and_finish_sent_queues_next), \
        T(test_m1_retry_then_failed_state), \
        T(test_m2_renewed_lease_is_not_leased_again), \
        T(test_m2_expired_lease_is_leased_again), \
        T(test_m2_lease_takes_due_hops_of_every_state_in_order), \
        T(test_m2_intake_lost_commit_hook_commits), \
        T(test_m1_resend_requeues_failed), \
        T(test_m1_message_list_filter_and_paging), \
        T(test_m1_message_list_refused_state), \
        T(test_m8_message_id_prefix), \
        T(test_m1_flow_put_get_generation), \
        T(test_m2_group_commit_batch), \
        T(test_m4_lease_lane_by_message_size), \
        T(test_m4_migration_gives_old_hops_their_size), \
        T(test_m4_hop_wait_is_not_an_attempt), \
        T(test_r15_connector_secrets_follow_the_flow), \
        T(test_m5_connector_config_set), \
        T(test_r22_refusals_fold_into_bursts), \
        T(test_m7_certs_added_and_receipts_kept), \
        T(test_r21_nodes_leasing_together_never_share_a_hop), \
        T(test_r21_nodes_finishing_one_message_agree_on_its_state), \
        T(test_r21_nodes_refused_together_fold_into_one_burst), \
        T(test_r21_nodes_beat_and_show_their_leases), \
        T(test_r20_backup_runs_are_recorded), \
        T(test_r21_one_node_leads_each_cluster_job), \
        T(test_r21_stale_holds_are_released), \
        T(test_m4_release_keeps_the_mdn_in_the_same_transaction), \
        T(test_m4_release_queues_the_owed_mdn_in_the_same_transaction), \
        T(test_m4_intake_keeps_its_mdn_and_job_in_the_same_commit), \
        T(test_m4_hop_outcome_keeps_its_mdn_both_or_neither), \
        T(test_r21_serve_start_releases_only_its_own_holds)
    const struct CMUnitTest sqlite[] = {
        CONFORMANCE,
        /* single node: serve's start gives every lease back */
        T(test_m2_leases_release),
        T(test_m2_sync_level_changes_only_for_a_write_alone),
        T(test_m2_lease_work_does_not_grow_with_the_queue),
        T(test_m4_large_lane_lease_work_does_not_grow_with_small_ones),
        T(test_m2_migration_version),
        T(test_r21_payload_rows_refused_on_sqlite),
    };
    const struct CMUnitTest postgresql[] = {
        CONFORMANCE,
        T(test_r21_pg_node_start_takes_no_lease_of_another),
        T(test_r21_pg_schema_made_once_newer_refused),
        T(test_r21_pg_url_password_is_never_shown),
        T(test_r21_pg_close_does_not_wait_on_a_stalled_server),
        T(test_r21_pg_connections_detect_a_dead_server),
        T(test_r21_pg_lease_renewal_skips_a_hop_being_finished),
        T(test_r21_pg_lease_work_does_not_grow_with_the_queue),
        T(test_r21_pg_large_lane_lease_work_does_not_grow_with_small_ones),
        T(test_r21_pg_payload_rows_round_trip),
        T(test_r21_pg_payload_head_reads_first_rows_and_count),
        T(test_r21_pg_payload_rollback_leaves_nothing),
        T(test_r21_pg_payload_reader_keeps_its_snapshot),
        T(test_r21_pg_payload_replace_and_delete),
        T(test_r21_pg_payload_sweep_only_old_orphans),
        cmocka_unit_test(test_r21_store_url_rules),
    };
#undef CONFORMANCE
#undef T
    int failed = cmocka_run_group_tests_name("store (sqlite)", sqlite, NULL,
                                             NULL);
    g_pg = 1;
    failed += cmocka_run_group_tests_name("store (postgresql)", postgresql,
                                          NULL, NULL);
    return failed;
}
