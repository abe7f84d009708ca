/*
 * test_rotate.c - master key rotation of a data directory (R15,
 * core/rotate.c over a real data dir made by wharf_init): every payload
 * header and every kind of sealed value the database keeps (an AS2 profile
 * key, a connector's secret file and its OAuth state, a TOTP seed, the OIDC
 * client secret, a job's data and input) ends up under the new key and opens with the new keystore
 * alone; a value that cannot be re-wrapped keeps the old key (nothing
 * becomes unreadable) until it is dealt with, and the next run finishes the
 * unfinished rotation; the store's rewrite writes only what is still as it
 * was listed, and rolls a batch back as a whole.
 *
 * The values are sealed here with the contexts their owners use (see the
 * top of src/core/rotate.c); tests/e2e/test_r15_key_rotation.py proves the
 * same with the real owners (AS2, webhook, SFTP, OAuth, TOTP, OIDC).
 */
#include "testutil.h"
#include "wharf_fixture.h"

#include <sys/stat.h>
#include <unistd.h>

#include "core/jobs.h"
#include "core/rotate.h"
#include "core/wharf.h"
#include "store/auth_store.h"
#include "store/job_store.h"
#include "store/partner_store.h"
#include "store/sealed_store.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/secret.h"
#include "vault/vault.h"

#define CERT_ID "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define JOB_ID "01900000-0000-7000-8000-0000000000a1"
#define JOB_MSG "01900000-0000-7000-8000-0000000000b2"

struct fx {
    struct wharf_fixture x;         /* the data dir, its wharf and store */
    char old_id[VAULT_KEY_ID_LEN + 1];
    char msg[2][ID_LEN + 1];
    int64_t user_id;
};

/* One sealed value: where it is kept, its context, its plaintext. */
struct value {
    enum store_sealed_kind kind;        /* STORE_SEALED_KINDS: the setting */
    const char *owner, *name, *context, *plain;
};

static const struct value VALUES[] = {
    { STORE_SEALED_PROFILE_KEY, "", CERT_ID, "profile-key:" CERT_ID,
      "-----PRIVATE KEY----- (profile)" },
    { STORE_SEALED_CONNECTOR, "hook", "auth.password_file",
      "connector:hook:auth.password_file", "hook-password" },
    { STORE_SEALED_CONNECTOR, "api", "state:oauth.refresh",
      "connector:api:state:oauth.refresh", "rt-refresh-token" },
    { STORE_SEALED_TOTP, "alice", NULL, "totp:alice", "12345678901234567890" },
    { STORE_SEALED_JOB_DATA, "as2-b", JOB_ID, "job:" JOB_ID ":data",
      "MDN to send" },
    { STORE_SEALED_JOB_INPUT, "as2-b", JOB_ID, "job:" JOB_ID ":input",
      "MDN that arrived" },
    { STORE_SEALED_KINDS, "oidc_client_secret", NULL, "oidc:client_secret",
      "oidc-client-secret" },
};
#define NVALUES (sizeof(VALUES) / sizeof(VALUES[0]))

static unsigned char *seal(struct vault *v, const struct value *x,
                           size_t *len)
{
    struct error err = {0};
    struct secret *s = secret_from(x->plain, strlen(x->plain));
    unsigned char *blob = NULL;
    if (vault_seal(v, x->context, s, &blob, len, &err) != 0)
        fail_msg("seal %s: %s", x->context, err.msg);
    secret_free(s);
    return blob;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Store VALUES[i] sealed by v where its owner keeps it. */
static void put_value(struct fx *f, struct vault *v, const struct value *x)
{
    struct error err = {0};
    size_t len = 0;
    unsigned char *blob = seal(v, x, &len);
    int rc = 0;
    if (x->kind == STORE_SEALED_PROFILE_KEY) {
        unsigned char der[3] = { 0x30, 0x01, 0x00 };
        struct store_cert c = { .owner = (char *)"", .subject = (char *)"x",
                                .der = der, .der_len = 3, .key = blob,
                                .key_len = len, .not_after = 1 };
        snprintf(c.id, sizeof(c.id), "%s", CERT_ID);
        rc = store_cert_add(f->x.st, &c, NULL, &err);
    } else if (x->kind == STORE_SEALED_CONNECTOR) {
        rc = store_csecret_put(f->x.st, x->owner, x->name, blob, len, 0, &err);
    } else if (x->kind == STORE_SEALED_TOTP) {
        rc = store_user_set_totp(f->x.st, f->user_id, blob, len, 1, &err);
    } else if (x->kind == STORE_SEALED_JOB_DATA) {
        struct store_job_new j = { .id = JOB_ID, .message_id = JOB_MSG,
            .connector = x->owner, .kind = "as2.mdn-out", .waiting = 1,
            .data = blob, .data_len = len };
        rc = store_job_add(f->x.st, &j, &err);
    } else if (x->kind == STORE_SEALED_JOB_INPUT) {
        rc = store_job_input(f->x.st, JOB_ID, blob, len, &err) == 1 ? 0 : -1;
    } else {
        char *h = malloc(2 * len + 1);
        hex(blob, len, h);
        rc = store_setting_set(f->x.st, x->owner, h, &err);
        free(h);
    }
    free(blob);
    if (rc != 0)
        fail_msg("store %s: %s", x->context, err.msg);
}

/* The stored blob of x (malloc'ed). */
static unsigned char *get_value(struct fx *f, const struct value *x,
                                size_t *len)
{
    struct error err = {0};
    if (x->kind == STORE_SEALED_KINDS) {
        char *h = NULL;
        assert_int_equal(store_setting_get(f->x.st, x->owner, &h, &err), 0);
        assert_non_null(h);
        *len = strlen(h) / 2;
        unsigned char *b = malloc(*len);
        for (size_t i = 0; i < *len; i++) {
            unsigned v;
            assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
            b[i] = (unsigned char)v;
        }
        free(h);
        return b;
    }
    struct store_sealed *rows;
    size_t n;
    unsigned char *b = NULL;
    assert_int_equal(store_sealed_list(f->x.st, x->kind, &rows, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].owner, x->owner) == 0 &&
            (x->name == NULL || strcmp(rows[i].name, x->name) == 0)) {
            b = malloc(rows[i].len);
            memcpy(b, rows[i].blob, rows[i].len);
            *len = rows[i].len;
        }
    store_sealed_free(rows, n);
    assert_non_null(b);
    return b;
}

/* A payload file of message i, sealed by v, and its message row. */
static void put_payload(struct fx *f, int i)
{
    struct error err = {0};
    char rel[100], path[4400];
    id_new(f->msg[i]);
    snprintf(rel, sizeof(rel), "payloads/%s.wpay", f->msg[i]);
    assert_int_equal(wharf_path(f->x.w, rel, path, sizeof(path)) >= 0, 1);
    struct payload_writer *pw = payload_create(f->x.w->vault, path, f->msg[i],
                                               &err);
    assert_non_null(pw);
    assert_int_equal(payload_write(pw, "payload bytes", 13, &err), 0);
    struct payload_info info;
    assert_int_equal(payload_finish(pw, &info, NULL, &err), 0);
    struct store_message m;
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%s", f->msg[i]);
    m.created_at = time_now_ms();
    m.source = (char *)"inbox";
    m.size = 13;
    m.sha256 = info.sha256;
    m.payload_path = rel;
    struct store_new it = { .msg = &m };
    if (store_intake(f->x.st, &it, 1, &err) != 0)
        fail_msg("intake: %s", err.msg);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    wharf_fixture_open(&f->x);
    struct error err = {0};
    snprintf(f->old_id, sizeof(f->old_id), "%s",
             vault_active_id(f->x.w->vault));
    if (store_user_create(f->x.st, "alice", "viewer", NULL, 0, 1, &f->user_id,
                          &err) != 0)
        fail_msg("user: %s", err.msg);
    for (size_t i = 0; i < NVALUES; i++)
        put_value(f, f->x.w->vault, &VALUES[i]);
    put_payload(f, 0);
    put_payload(f, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    wharf_fixture_close(&f->x);
    free(f);
    return 0;
}

static void problem_count(void *arg, const char *msg)
{
    (void)msg;
    ++*(int *)arg;
}

/* Rotation steps 1-4 on f->x.w; returns rotate_finish's result. */
static int run_rotation(struct fx *f, struct rotate_report *r, int *problems,
                        struct error *err)
{
    memset(r, 0, sizeof(*r));
    r->problem = problem_count;
    r->arg = problems;
    assert_int_equal(vault_lock_exclusive(f->x.w->vault, err), 0);
    assert_int_equal(rotate_begin(f->x.w, r, err), 0);
    assert_int_equal(rotate_rewrap(f->x.w, f->x.st, r, err), 0);
    return rotate_finish(f->x.w, r, err);
}

/* Every value but VALUES[skip] opens with v (a keystore read from disk);
 * with current, each also names v's active key. The payloads too. */
static void expect_open(struct fx *f, struct vault *v, size_t skip,
                        int current)
{
    for (size_t i = 0; i < NVALUES; i++) {
        if (i == skip)
            continue;
        struct error err = {0};
        size_t len = 0;
        unsigned char *b = get_value(f, &VALUES[i], &len);
        struct secret *s = vault_unseal(v, VALUES[i].context, b, len, &err);
        if (s == NULL)
            fail_msg("%s does not open: %s", VALUES[i].context, err.msg);
        assert_int_equal(secret_len(s), strlen(VALUES[i].plain));
        assert_memory_equal(secret_data(s), VALUES[i].plain,
                            secret_len(s));
        if (current)
            assert_memory_equal(b + 1, vault_active_id(v), VAULT_KEY_ID_LEN);
        secret_free(s);
        free(b);
    }
    for (int i = 0; i < 2; i++) {
        struct error err = {0};
        char rel[100], path[4400], buf[32];
        snprintf(rel, sizeof(rel), "payloads/%s.wpay", f->msg[i]);
        wharf_path(f->x.w, rel, path, sizeof(path));
        struct payload_reader *pr = payload_open(v, path, f->msg[i], &err);
        if (pr == NULL)
            fail_msg("payload %d: %s", i, err.msg);
        assert_int_equal(payload_read(pr, buf, sizeof(buf), &err), 13);
        payload_close(pr);
    }
}

static void test_r15_rotation_rewraps_every_kind_of_sealed_value(
    void **state)
{
    struct fx *f = *state;
    struct rotate_report r;
    struct error err = {0};
    int problems = 0;
    if (run_rotation(f, &r, &problems, &err) != 0)
        fail_msg("rotation: %s", err.msg);
    assert_int_equal(problems, 0);
    assert_int_equal(r.resumed, 0);
    assert_string_equal(r.old, f->old_id);
    assert_string_not_equal(r.active, f->old_id);
    assert_int_equal(r.payloads, 2);
    assert_int_equal(r.sealed, (long)NVALUES);
    assert_int_equal(r.sealed_failed + r.payloads_failed, 0);
    /* the keystore on disk holds the new key only, and it opens all */
    vault_close(f->x.w->vault);
    f->x.w->vault = vault_open(f->x.w->keystore_path, &err);
    assert_non_null(f->x.w->vault);
    assert_int_equal(vault_key_count(f->x.w->vault), 1);
    assert_string_equal(vault_active_id(f->x.w->vault), r.active);
    expect_open(f, f->x.w->vault, NVALUES, 1);
    /* again: everything is current, nothing is re-sealed */
    char first[VAULT_KEY_ID_LEN + 1];
    snprintf(first, sizeof(first), "%s", r.active);
    assert_int_equal(run_rotation(f, &r, &problems, &err), 0);
    assert_int_equal(r.payloads, 2);
    assert_int_equal(r.sealed, (long)NVALUES);
    assert_string_equal(r.old, first);
}

/* A job value its kind keeps in the clear (core/jobs.h: AS2's MDN jobs)
 * is no sealed value: rotation leaves it as it is, counts it neither
 * re-sealed nor failed, and the old key still goes. */
static void test_r15_rotation_leaves_job_values_in_the_clear(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    const char id2[] = "01900000-0000-7000-8000-0000000000a2";
    const unsigned char data[] = JOBS_CLEAR_TAG "<id@a>\nMIC";
    const unsigned char in[] = JOBS_CLEAR_TAG "an MDN";
    struct store_job_new j = { .id = id2, .message_id = JOB_MSG,
        .connector = "as2-b", .kind = "as2.mdn-wait", .waiting = 1,
        .data = data, .data_len = sizeof(data) - 1 };
    assert_int_equal(store_job_add(f->x.st, &j, &err), 0);
    assert_int_equal(store_job_input(f->x.st, id2, in, sizeof(in) - 1, &err),
                     1);
    struct rotate_report r;
    int problems = 0;
    if (run_rotation(f, &r, &problems, &err) != 0)
        fail_msg("rotation: %s", err.msg);
    assert_int_equal(problems, 0);
    assert_int_equal(r.sealed, (long)NVALUES);
    assert_int_equal(r.sealed_failed, 0);
    vault_close(f->x.w->vault);
    f->x.w->vault = vault_open(f->x.w->keystore_path, &err);
    assert_non_null(f->x.w->vault);
    assert_int_equal(vault_key_count(f->x.w->vault), 1);
    int seen = 0;
    for (int k = 0; k < 2; k++) {
        struct store_sealed *rows;
        size_t n;
        assert_int_equal(store_sealed_list(f->x.st, k ? STORE_SEALED_JOB_INPUT
                                           : STORE_SEALED_JOB_DATA, &rows, &n,
                                           &err), 0);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(rows[i].name, id2) != 0)
                continue;
            seen++;
            const unsigned char *want = k ? in : data;
            size_t wlen = k ? sizeof(in) - 1 : sizeof(data) - 1;
            assert_int_equal(rows[i].len, wlen);
            assert_memory_equal(rows[i].blob, want, wlen);
        }
        store_sealed_free(rows, n);
    }
    assert_int_equal(seen, 2);
    expect_open(f, f->x.w->vault, NVALUES, 1);
}

static void test_r15_rotation_keeps_old_key_while_a_value_fails(
    void **state)
{
    struct fx *f = *state;
    struct rotate_report r;
    struct error err = {0};
    int problems = 0;
    /* the OAuth state row is corrupted: it cannot be opened, so it cannot
     * be re-sealed */
    size_t len;
    unsigned char *b = get_value(f, &VALUES[2], &len);
    b[len - 1] ^= 1;
    assert_int_equal(store_csecret_put(f->x.st, "api", "state:oauth.refresh", b,
                                       len, 0, &err), 0);
    free(b);
    assert_int_equal(run_rotation(f, &r, &problems, &err), -1);
    assert_int_equal(problems, 1);
    assert_int_equal(r.sealed_failed, 1);
    assert_int_equal(r.sealed, (long)NVALUES - 1);
    assert_non_null(strstr(err.msg, "old key(s) "));
    assert_non_null(strstr(err.msg, f->old_id));
    assert_non_null(strstr(err.msg, "run `wharf key rotate` again"));
    /* both keys are still there: the rest opens with the keystore on disk */
    vault_close(f->x.w->vault);
    f->x.w->vault = vault_open(f->x.w->keystore_path, &err);
    assert_non_null(f->x.w->vault);
    assert_int_equal(vault_key_count(f->x.w->vault), 2);
    expect_open(f, f->x.w->vault, 2, 0);
    /* once the bad value is gone, running it again finishes the rotation
     * under the same new key */
    char active[VAULT_KEY_ID_LEN + 1];
    snprintf(active, sizeof(active), "%s", vault_active_id(f->x.w->vault));
    assert_int_equal(store_csecret_del(f->x.st, "api", "state:oauth.refresh",
                                       &err), 0);
    problems = 0;
    if (run_rotation(f, &r, &problems, &err) != 0)
        fail_msg("rotation: %s", err.msg);
    assert_int_equal(r.resumed, 1);
    assert_string_equal(r.active, active);
    assert_string_equal(r.old, f->old_id);
    assert_int_equal(r.sealed, 0);          /* all done the first time */
    assert_int_equal(vault_key_count(f->x.w->vault), 1);
}

static void test_r15_rotation_resumes_after_a_kill(void **state)
{
    struct fx *f = *state;
    struct rotate_report r = {0};
    struct error err = {0};
    int problems = 0;
    /* step 1 only, then the process is gone (its locks with it) */
    assert_int_equal(vault_lock_exclusive(f->x.w->vault, &err), 0);
    assert_int_equal(rotate_begin(f->x.w, &r, &err), 0);
    char active[VAULT_KEY_ID_LEN + 1];
    snprintf(active, sizeof(active), "%s", r.active);
    store_close(f->x.st);
    wharf_close(f->x.w);
    f->x.w = wharf_open(f->x.data, &err);
    assert_non_null(f->x.w);
    f->x.st = store_open(f->x.w->db_path, &err);
    assert_non_null(f->x.st);
    /* everything still opens: the old key is still in the keystore */
    assert_int_equal(vault_key_count(f->x.w->vault), 2);
    assert_string_equal(vault_active_id(f->x.w->vault), active);
    expect_open(f, f->x.w->vault, NVALUES, 0);
    /* the next run finishes it under the same key, adding none */
    if (run_rotation(f, &r, &problems, &err) != 0)
        fail_msg("rotation: %s", err.msg);
    assert_int_equal(r.resumed, 1);
    assert_string_equal(r.active, active);
    assert_string_equal(r.old, f->old_id);
    assert_int_equal(r.payloads, 2);
    assert_int_equal(r.sealed, (long)NVALUES);
    vault_close(f->x.w->vault);
    f->x.w->vault = vault_open(f->x.w->keystore_path, &err);
    assert_non_null(f->x.w->vault);
    assert_int_equal(vault_key_count(f->x.w->vault), 1);
    expect_open(f, f->x.w->vault, NVALUES, 1);
}

/* store_sealed_fn of the rewrite test: "new:<name>" for every row; -1 at
 * the row named *arg, when set. */
static int rewrite_fn(void *arg, const struct store_sealed *row,
                      unsigned char **blob, size_t *len, struct error *err)
{
    const char *fail_at = arg;
    if (fail_at != NULL && strcmp(row->name, fail_at) == 0)
        return error_set(err, "refused");
    char *b = malloc(100);
    *len = (size_t)snprintf(b, 100, "new:%s", row->name);
    *blob = (unsigned char *)b;
    return 1;
}

static void test_r15_sealed_rewrite_is_compare_and_set(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_sealed *rows;
    size_t n, done = 99, len;
    assert_int_equal(store_sealed_list(f->x.st, STORE_SEALED_CONNECTOR, &rows,
                                       &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].owner, "api");      /* stable order */
    assert_string_equal(rows[1].owner, "hook");
    /* a batch that fails half-way writes nothing */
    assert_int_equal(store_sealed_rewrite(f->x.st, rows, n, rewrite_fn,
                                          (void *)"auth.password_file", &done,
                                          &err), -1);
    assert_int_equal(done, 0);
    unsigned char *b = get_value(f, &VALUES[2], &len);
    assert_memory_equal(b, rows[0].blob, len);
    free(b);
    /* a row changed since it was listed is left alone, not counted */
    assert_int_equal(store_csecret_put(f->x.st, "hook", "auth.password_file",
                                       "changed", 7, 0, &err), 0);
    assert_int_equal(store_sealed_rewrite(f->x.st, rows, n, rewrite_fn, NULL,
                                          &done, &err), 0);
    assert_int_equal(done, 1);
    b = get_value(f, &VALUES[2], &len);
    assert_int_equal(len, strlen("new:state:oauth.refresh"));
    assert_memory_equal(b, "new:state:oauth.refresh", len);
    free(b);
    b = get_value(f, &VALUES[1], &len);
    assert_int_equal(len, 7);
    assert_memory_equal(b, "changed", 7);
    free(b);
    store_sealed_free(rows, n);
    /* the other kinds are listed with what the rotation needs */
    assert_int_equal(store_sealed_list(f->x.st, STORE_SEALED_TOTP, &rows, &n,
                                       &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].owner, "alice");
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)f->user_id);
    assert_string_equal(rows[0].name, id);
    store_sealed_free(rows, n);
    assert_int_equal(store_sealed_list(f->x.st, STORE_SEALED_PROFILE_KEY, &rows,
                                       &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].name, CERT_ID);
    store_sealed_free(rows, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_r15_rotation_rewraps_every_kind_of_sealed_value),
        T(test_r15_rotation_leaves_job_values_in_the_clear),
        T(test_r15_rotation_keeps_old_key_while_a_value_fails),
        T(test_r15_rotation_resumes_after_a_kill),
        T(test_r15_sealed_rewrite_is_compare_and_set),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
