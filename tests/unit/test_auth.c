/*
 * test_auth.c - people, programs and roles (src/auth/, src/store/
 * sqlite_auth.c): Argon2id storage and the password policy (R16), the
 * permission table (R14), TOTP with recovery codes, logins and sessions
 * with their timeouts (R13, R17), API tokens (R4), and that no secret
 * reaches the log or the audit trail (R6).
 *
 * Each test gets a fresh data dir (keystore, database, logs at trace
 * level) and an auth context whose clock is fixed (a.now_ms), so timeouts
 * are tested by moving the clock, not by sleeping.
 */
#include "testutil.h"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "store/audit_store.h"
#include "store/store.h"
#include "util/log.h"
#include "util/secret.h"
#include "vault/vault.h"

#define T0 1767225600000LL          /* 2026-01-01T00:00:00Z, a step boundary */
#define MIN_MS 60000LL
#define GOOD_PW "tidal-quartz-ember-47"

/* ---- fixture ------------------------------------------------------------------ */

struct fx {
    char dir[256], db[320], logdir[320];
    char pgname[64];            /* the PostgreSQL database, "" on SQLite */
    struct store *st;
    struct vault *v;
    struct auth a;
};

/* The group running: 0 SQLite (db a file), 1 PostgreSQL (db a URL to a
 * fresh database of the server of WHARF_TEST_PG). */
static int g_pg;

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/wharf.db", f->dir);
    if (g_pg)
        test_pg_fresh(f->db, sizeof(f->db), f->pgname);
    snprintf(f->logdir, sizeof(f->logdir), "%s/logs", f->dir);
    char ks[320];
    snprintf(ks, sizeof(ks), "%s/keystore", f->dir);
    struct error err = {0};
    if (vault_create(ks, &err) != 0 || (f->v = vault_open(ks, &err)) == NULL ||
        (f->st = store_open(f->db, &err)) == NULL ||
        log_open(f->logdir, LOG_TRACE, false, &err) != 0)
        fail_msg("setup: %s", err.msg);
    auth_init(&f->a, f->st, f->v);
    f->a.now_ms = T0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    log_close();
    store_close(f->st);
    vault_close(f->v);
    if (f->pgname[0])
        test_pg_drop(f->pgname);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static const struct auth_actor CLI = { "cli", NULL };

static struct secret *sec(const char *s)
{
    return secret_from(s, strlen(s));
}

/* A secret's bytes as a NUL-terminated copy (tests only). */
static char *sdup(const struct secret *s)
{
    char *p = calloc(1, secret_len(s) + 1);
    assert_non_null(p);
    memcpy(p, secret_data(s), secret_len(s));
    return p;
}

static void user_add(struct fx *f, const char *name, enum role role,
                     const char *pw)
{
    struct error err = {0};
    struct secret *p = sec(pw);
    int rc = auth_user_create(&f->a, &CLI, name, role, p, NULL, &err);
    secret_free(p);
    if (rc != AUTH_OK)
        fail_msg("create %s: %s", name, err.msg);
}

static int64_t user_id(struct fx *f, const char *name)
{
    struct store_user u;
    struct error err = {0};
    assert_int_equal(auth_user_get(&f->a, name, &u, &err), AUTH_OK);
    int64_t id = u.id;
    store_user_clear(&u);
    return id;
}

static void setting(struct fx *f, const char *k, const char *v)
{
    struct error err = {0};
    assert_int_equal(store_setting_set(f->st, k, v, &err), 0);
}

/* Audit rows "action|target|detail|address|actor" joined by '\n' (caller
 * frees), read through the store (either backend). */
static char *audit_dump(struct fx *f)
{
    struct store_audit_row *rows = NULL;
    size_t n = 0, cap = 1 << 16, len = 0;
    struct error err = {0};
    char *out = calloc(1, cap);
    assert_non_null(out);
    for (int64_t after = 0;; after = rows[n - 1].seq) {
        store_audit_rows_free(rows, n);
        rows = NULL;
        if (store_audit_list(f->st, after, 500, &rows, &n, &err) < 0)
            fail_msg("store_audit_list: %s", err.msg);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            const struct store_audit_row *r = &rows[i];
            size_t need = strlen(r->action) + strlen(r->actor) + 8 +
                (r->target ? strlen(r->target) : 0) +
                (r->detail ? strlen(r->detail) : 0) +
                (r->address ? strlen(r->address) : 0);
            if (len + need + 1 > cap) {
                cap = 2 * (len + need + 1);
                out = realloc(out, cap);
                assert_non_null(out);
            }
            len += (size_t)snprintf(out + len, cap - len, "%s|%s|%s|%s|%s\n",
                                    r->action, r->target ? r->target : "",
                                    r->detail ? r->detail : "",
                                    r->address ? r->address : "", r->actor);
        }
    }
    store_audit_rows_free(rows, n);
    return out;
}

static int audit_has(struct fx *f, const char *needle)
{
    char *d = audit_dump(f);
    int found = strstr(d, needle) != NULL;
    free(d);
    return found;
}

/* ---- base32 and TOTP helpers (the test's own, independent of totp.c) ---- */

static size_t b32_decode(const char *in, size_t n, unsigned char *out)
{
    uint32_t buf = 0;
    int bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", in[i]);
        assert_non_null(p);
        buf = (buf << 5) | (uint32_t)(p - "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
        bits += 5;
        if (bits >= 8) {
            out[k++] = (unsigned char)(buf >> (bits - 8));
            bits -= 8;
        }
    }
    return k;
}

/* The seed inside an otpauth URI (20 bytes). */
static void uri_seed(const struct secret *uri, unsigned char seed[20])
{
    char *u = sdup(uri);
    const char *s = strstr(u, "secret=");
    assert_non_null(s);
    s += 7;
    size_t n = strcspn(s, "&");
    assert_int_equal(n, 32);
    assert_int_equal(b32_decode(s, n, seed), 20);
    free(u);
}

/* The 6-digit code for the seed at time ms, as a secret. */
static struct secret *code_at(const unsigned char seed[20], int64_t ms)
{
    char c[8];
    snprintf(c, sizeof(c), "%06u",
             totp_code(seed, 20, (uint64_t)(ms / 1000 / 30), 6));
    return sec(c);
}

/* Enroll and confirm TOTP for name at f->a.now_ms; seed and recovery
 * codes (one per line; caller frees) returned. */
static char *enroll(struct fx *f, const char *name, unsigned char seed[20])
{
    struct error err = {0};
    struct secret *uri = NULL, *codes = NULL;
    if (auth_totp_enroll(&f->a, &CLI, name, &uri, &err) != AUTH_OK)
        fail_msg("enroll: %s", err.msg);
    uri_seed(uri, seed);
    secret_free(uri);
    struct secret *c = code_at(seed, f->a.now_ms);
    if (auth_totp_confirm(&f->a, &CLI, name, c, &codes, &err) != AUTH_OK)
        fail_msg("confirm: %s", err.msg);
    secret_free(c);
    char *out = sdup(codes);
    secret_free(codes);
    return out;
}

static int mfa(struct fx *f, const char *name, const char *code,
               int *recovery, const char **why)
{
    struct store_user u;
    struct error err = {0};
    assert_int_equal(auth_user_get(&f->a, name, &u, &err), AUTH_OK);
    struct secret *c = sec(code);
    int rc = auth_mfa_check(&f->a, &CLI, &u, c, recovery, why, &err);
    secret_free(c);
    store_user_clear(&u);
    return rc;
}

/* ---- R16: Argon2id ------------------------------------------------------------ */

static void test_r16_argon2id_params_in_hash(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct secret *pw = sec(GOOD_PW), *bad = sec(GOOD_PW "x");
    char *h1 = NULL, *h2 = NULL;
    assert_int_equal(auth_password_hash(pw, &h1, &err), AUTH_OK);
    assert_int_equal(auth_password_hash(pw, &h2, &err), AUTH_OK);
    assert_true(strncmp(h1, "$argon2id$v=19$m=65536,t=3,p=1$", 31) == 0);
    assert_string_not_equal(h1, h2);            /* random salt */
    assert_true(auth_password_verify(h1, pw));
    assert_false(auth_password_verify(h1, bad));
    assert_false(auth_password_verify("$argon2i$v=19$m=65536,t=3,p=1$x$y", pw));
    assert_null(strstr(h1, GOOD_PW));
    free(h1);
    free(h2);
    /* and what the store keeps for a user is that encoding */
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    struct store_user u;
    assert_int_equal(store_user_get_by_name(f->st, "alice", &u, &err), 0);
    assert_true(strncmp(u.password_hash, "$argon2id$v=19$m=65536,t=3,p=1$",
                        31) == 0);
    assert_true(auth_password_verify(u.password_hash, pw));
    store_user_clear(&u);
    secret_free(pw);
    secret_free(bad);
}

static int policy(const char *name, const char *pw)
{
    struct error err = {0};
    struct secret *s = sec(pw);
    int rc = auth_password_policy(name, s, &err);
    secret_free(s);
    if (rc != AUTH_OK)
        assert_null(strstr(err.msg, pw));       /* never names the password */
    return rc;
}

static void test_r16_password_policy_length(void **state)
{
    (void)state;
    assert_int_equal(policy("alice", "tidal-quar7"), AUTH_INVALID);   /* 11 */
    assert_int_equal(policy("alice", "tidal-quar7z"), AUTH_OK);       /* 12 */
    /* characters, not bytes: 6 x "é" is 12 bytes but 6 characters */
    assert_int_equal(policy("alice", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                     "\xc3\xa9"), AUTH_INVALID);
    assert_int_equal(policy("alice", "p\xc3\xa9tanque-lun\xc3\xa9"), AUTH_OK);
    char big[AUTH_PASSWORD_MAX + 2];
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = (char)('a' + (i * 7) % 26);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(policy("alice", big), AUTH_INVALID);
}

static void test_r16_password_policy_user_name(void **state)
{
    (void)state;
    assert_int_equal(policy("alicewonderland", "alicewonderland"),
                     AUTH_INVALID);
    assert_int_equal(policy("alicewonderland", "AliceWonderland"),
                     AUTH_INVALID);
    assert_int_equal(policy("bob", "my-BOB-is-strong-42"), AUTH_INVALID);
    assert_int_equal(policy("bob", "my-rob-is-strong-42"), AUTH_OK);
}

static void test_r16_password_policy_common_list(void **state)
{
    (void)state;
    const char *weak[] = {
        "passwordpassword", "PasswordPassword", "qwertyuiopasdfghjkl",
        "CorrectHorseBatteryStaple", "Password12345!", "Summer2024!!!",
        "!!!Football2024", "123456789012", "1q2w3e4r5t6y7u",
        "iloveyouiloveyou", "welcomewelcome",
    };
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++)
        if (policy("alice", weak[i]) != AUTH_INVALID)
            fail_msg("common password accepted: %s", weak[i]);
    assert_int_equal(policy("alice", "glacier-violin-kettle"), AUTH_OK);
}

static void test_r16_password_policy_patterns(void **state)
{
    (void)state;
    assert_int_equal(policy("alice", "aaaaaaaaaaaaaaaa"), AUTH_INVALID);
    assert_int_equal(policy("alice", "abababababababab"), AUTH_INVALID);
    assert_int_equal(policy("alice", "xyz1xyz1xyz1xyz1"), AUTH_INVALID);
    assert_int_equal(policy("alice", "3456789012345"), AUTH_INVALID);
    assert_int_equal(policy("alice", "zyxwvutsrqponm"), AUTH_INVALID);
    assert_int_equal(policy("alice", "monkeymonkeymonkey"), AUTH_INVALID);
    assert_int_equal(policy("alice", "monkey-piano-cactus"), AUTH_OK);
}

static void test_r16_one_time_password(void **state)
{
    (void)state;
    struct secret *a = auth_password_generate(), *b = auth_password_generate();
    assert_int_equal(secret_len(a), 23);
    assert_false(secret_equal(a, b));
    char *s = sdup(a);
    assert_int_equal(s[5], '-');
    assert_int_equal(policy("alice", s), AUTH_OK);
    free(s);
    secret_free(a);
    secret_free(b);
}

static void test_r16_authenticate_generic_failure(void **state)
{
    struct fx *f = *state;
    struct error e1 = {0}, e2 = {0}, e3 = {0};
    struct store_user u;
    const char *why = NULL;
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    user_add(f, "carol", ROLE_VIEWER, GOOD_PW);
    struct error err = {0};
    assert_int_equal(auth_user_set_disabled(&f->a, &CLI, "carol", 1, &err),
                     AUTH_OK);
    struct secret *pw = sec(GOOD_PW), *bad = sec("wrong-password-123");

    assert_int_equal(auth_authenticate(&f->a, "alice", pw, &u, &why, &err),
                     AUTH_OK);
    assert_string_equal(u.name, "alice");
    store_user_clear(&u);

    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(auth_authenticate(&f->a, "alice", bad, &u, &why, &e1),
                     AUTH_DENIED);
    assert_string_equal(why, "wrong password");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(auth_authenticate(&f->a, "nobody", pw, &u, &why, &e2),
                     AUTH_DENIED);
    assert_string_equal(why, "unknown user");
    clock_gettime(CLOCK_MONOTONIC, &t2);
    assert_int_equal(auth_authenticate(&f->a, "carol", pw, &u, &why, &e3),
                     AUTH_DENIED);
    assert_string_equal(why, "user disabled");
    /* one message whatever the reason */
    assert_string_equal(e1.msg, e2.msg);
    assert_string_equal(e1.msg, e3.msg);
    /* an unknown name costs an Argon2id verification too */
    double known = (double)(t1.tv_sec - t0.tv_sec) +
                   (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double unknown = (double)(t2.tv_sec - t1.tv_sec) +
                     (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    if (unknown < known / 3)
        fail_msg("unknown user answered in %.3fs, a known one in %.3fs",
                 unknown, known);
    secret_free(pw);
    secret_free(bad);
}

static void test_r16_user_create_rules(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct secret *otp = NULL, *pw = sec(GOOD_PW);
    assert_int_equal(auth_user_create(&f->a, &CLI, "Bad Name", ROLE_VIEWER, pw,
                                      NULL, &err), AUTH_INVALID);
    assert_int_equal(auth_user_create(&f->a, &CLI, "ok", ROLE_COUNT, pw, NULL,
                                      &err), AUTH_INVALID);
    assert_int_equal(auth_user_bootstrap(&f->a, &otp, &err), AUTH_OK);
    assert_non_null(otp);
    struct store_user u;
    assert_int_equal(auth_user_get(&f->a, "admin", &u, &err), AUTH_OK);
    assert_string_equal(u.role, "admin");
    assert_int_equal(u.must_change, 1);
    assert_true(auth_password_verify(u.password_hash, otp));
    store_user_clear(&u);
    secret_free(otp);
    assert_int_equal(auth_user_create(&f->a, &CLI, "admin", ROLE_VIEWER, pw,
                                      NULL, &err), AUTH_CONFLICT);
    assert_true(audit_has(f, "user.create|admin|role=admin one-time-password||system"));
    secret_free(pw);
}

static void test_r16_password_change(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct secret *otp = NULL;
    assert_int_equal(auth_user_create(&f->a, &CLI, "dave", ROLE_OPERATOR, NULL,
                                      &otp, &err), AUTH_OK);
    struct auth_session_new s1, s2;
    int64_t id = user_id(f, "dave");
    assert_int_equal(auth_session_create(&f->a, id, NULL, 0, &s1, &err), 0);
    assert_int_equal(auth_session_create(&f->a, id, NULL, 0, &s2, &err), 0);
    struct secret *np = sec(GOOD_PW), *wrong = sec("not-the-otp-123");
    assert_int_equal(auth_user_password(&f->a, &CLI, "dave", wrong, np, 0,
                                        NULL, &err), AUTH_DENIED);
    assert_int_equal(auth_user_password(&f->a, &CLI, "dave", otp, otp, 0,
                                        NULL, &err), AUTH_INVALID);
    assert_int_equal(auth_user_password(&f->a, &CLI, "dave", otp, np, 0,
                                        s2.handle, &err), AUTH_OK);
    struct store_user u;
    assert_int_equal(auth_user_get(&f->a, "dave", &u, &err), AUTH_OK);
    assert_int_equal(u.must_change, 0);
    assert_true(auth_password_verify(u.password_hash, np));
    store_user_clear(&u);
    struct auth_principal p;
    assert_int_equal(auth_session_validate(&f->a, s1.id, &p, &err),
                     AUTH_STALE);
    assert_int_equal(auth_session_validate(&f->a, s2.id, &p, &err), AUTH_OK);
    assert_true(audit_has(f, "user.password|dave|changed by the user "
                             "must_change=0 sessions_revoked=1"));
    auth_session_new_clear(&s1);
    auth_session_new_clear(&s2);
    secret_free(otp);
    secret_free(np);
    secret_free(wrong);
}

/* ---- R14: the permission table ------------------------------------------------ */

/* The documented table, written out again: a change in rbac.c that is not
 * also made here (and in the docs) fails. Columns: admin operator auditor
 * viewer. */
static const char *const EXPECTED[PERM_COUNT] = {
    [PERM_FLOW_READ] = "YYYY",      [PERM_FLOW_WRITE] = "YYNN",
    [PERM_CONNECTOR_TEST] = "YYNN", [PERM_MESSAGE_READ] = "YYYY",
    [PERM_PAYLOAD_READ] = "YYYN",   [PERM_MESSAGE_RESEND] = "YYNN",
    [PERM_MESSAGE_ERASE] = "YNNN",  [PERM_USER_READ] = "YNYN",
    [PERM_USER_WRITE] = "YNNN",     [PERM_TOKEN_READ] = "YNYN",
    [PERM_TOKEN_WRITE] = "YNNN",    [PERM_SESSION_READ] = "YNYN",
    [PERM_SESSION_WRITE] = "YNNN",  [PERM_SETTINGS_READ] = "YNYN",
    [PERM_SETTINGS_WRITE] = "YNNN", [PERM_AUDIT_READ] = "YNYN",
    [PERM_KEY_WRITE] = "YNNN",      [PERM_METRICS_READ] = "YYYN",
    /* R19: auditor reads, operator acknowledges, admin escalates */
    [PERM_ALERT_READ] = "YYYN",     [PERM_ALERT_ACK] = "YYNN",
    [PERM_INCIDENT_WRITE] = "YNNN",
    [PERM_POSTURE_READ] = "YNYN",
};

static void check_role(enum role r)
{
    for (int p = 0; p < PERM_COUNT; p++) {
        assert_non_null(EXPECTED[p]);
        bool want = EXPECTED[p][r] == 'Y';
        if (rbac_allows(r, (enum perm)p) != want)
            fail_msg("%s %s: table says %d, documented %d", rbac_role_name(r),
                     rbac_perm_name((enum perm)p), !want, want);
    }
}

static void test_r14_permission_table_admin(void **state)
{
    (void)state;
    check_role(ROLE_ADMIN);
    for (int p = 0; p < PERM_COUNT; p++)
        assert_true(rbac_allows(ROLE_ADMIN, (enum perm)p));
}

static void test_r14_permission_table_operator(void **state)
{
    (void)state;
    check_role(ROLE_OPERATOR);
    assert_true(rbac_allows(ROLE_OPERATOR, PERM_MESSAGE_RESEND));
    assert_false(rbac_allows(ROLE_OPERATOR, PERM_MESSAGE_ERASE));
    assert_false(rbac_allows(ROLE_OPERATOR, PERM_USER_WRITE));
    assert_false(rbac_allows(ROLE_OPERATOR, PERM_KEY_WRITE));
    assert_false(rbac_allows(ROLE_OPERATOR, PERM_SETTINGS_READ));
}

static void test_r14_permission_table_auditor(void **state)
{
    (void)state;
    check_role(ROLE_AUDITOR);
    /* reads everything, changes nothing */
    for (int p = 0; p < PERM_COUNT; p++) {
        const char *n = rbac_perm_name((enum perm)p);
        bool is_read = strstr(n, ".read") != NULL;
        assert_int_equal(rbac_allows(ROLE_AUDITOR, (enum perm)p), is_read);
    }
}

static void test_r14_permission_table_viewer(void **state)
{
    (void)state;
    check_role(ROLE_VIEWER);
    assert_true(rbac_allows(ROLE_VIEWER, PERM_FLOW_READ));
    assert_true(rbac_allows(ROLE_VIEWER, PERM_MESSAGE_READ));
    assert_false(rbac_allows(ROLE_VIEWER, PERM_PAYLOAD_READ));
}

static void test_r14_permission_table_deny_by_default(void **state)
{
    (void)state;
    assert_false(rbac_allows(ROLE_ADMIN, PERM_COUNT));
    assert_false(rbac_allows(ROLE_ADMIN, (enum perm)(PERM_COUNT + 7)));
    assert_false(rbac_allows(ROLE_ADMIN, (enum perm)-1));
    assert_false(rbac_allows(ROLE_COUNT, PERM_FLOW_READ));
    assert_false(rbac_allows((enum role)-1, PERM_FLOW_READ));
    assert_null(rbac_role_name(ROLE_COUNT));
    assert_null(rbac_perm_name(PERM_COUNT));
}

static void test_r14_role_and_perm_names(void **state)
{
    (void)state;
    const char *roles[] = { "admin", "operator", "auditor", "viewer" };
    enum role r;
    enum perm p;
    for (int i = 0; i < ROLE_COUNT; i++) {
        assert_string_equal(rbac_role_name((enum role)i), roles[i]);
        assert_int_equal(rbac_role_parse(roles[i], &r), 0);
        assert_int_equal(r, i);
    }
    assert_int_equal(rbac_role_parse("administrator", &r), 0);
    assert_int_equal(r, ROLE_ADMIN);
    assert_int_equal(rbac_role_parse("root", &r), -1);
    assert_int_equal(rbac_role_parse("Admin", &r), -1);
    for (int i = 0; i < PERM_COUNT; i++) {
        assert_int_equal(rbac_perm_parse(rbac_perm_name((enum perm)i), &p), 0);
        assert_int_equal(p, i);
    }
    assert_int_equal(rbac_perm_parse("flow.delete", &p), -1);
    assert_string_equal(rbac_perm_name(PERM_SESSION_WRITE), "session.write");
}

static void test_r14_role_covers(void **state)
{
    (void)state;
    for (int r = 0; r < ROLE_COUNT; r++) {
        assert_true(rbac_role_covers(ROLE_ADMIN, (enum role)r));
        assert_true(rbac_role_covers((enum role)r, ROLE_VIEWER));
    }
    assert_false(rbac_role_covers(ROLE_OPERATOR, ROLE_ADMIN));
    assert_false(rbac_role_covers(ROLE_OPERATOR, ROLE_AUDITOR));
    assert_false(rbac_role_covers(ROLE_AUDITOR, ROLE_OPERATOR));
    assert_false(rbac_role_covers(ROLE_VIEWER, ROLE_AUDITOR));
}

/* min(role, role) in the covers order; for operator and auditor (neither
 * covers the other) the greatest role under both: viewer. */
static void test_r14_role_meet(void **state)
{
    (void)state;
    for (int r = 0; r < ROLE_COUNT; r++) {
        assert_int_equal(rbac_role_meet((enum role)r, (enum role)r), r);
        assert_int_equal(rbac_role_meet(ROLE_ADMIN, (enum role)r), r);
        assert_int_equal(rbac_role_meet((enum role)r, ROLE_ADMIN), r);
        assert_int_equal(rbac_role_meet((enum role)r, ROLE_VIEWER),
                         ROLE_VIEWER);
        assert_int_equal(rbac_role_meet((enum role)r, ROLE_COUNT), ROLE_COUNT);
        assert_int_equal(rbac_role_meet((enum role)-1, (enum role)r),
                         ROLE_COUNT);
    }
    assert_int_equal(rbac_role_meet(ROLE_OPERATOR, ROLE_AUDITOR), ROLE_VIEWER);
    assert_int_equal(rbac_role_meet(ROLE_AUDITOR, ROLE_OPERATOR), ROLE_VIEWER);
}

static void test_r14_last_admin_protected(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    user_add(f, "root1", ROLE_ADMIN, GOOD_PW);
    assert_int_equal(auth_user_set_role(&f->a, &CLI, "root1", ROLE_VIEWER,
                                        &err), AUTH_CONFLICT);
    assert_int_equal(auth_user_set_disabled(&f->a, &CLI, "root1", 1, &err),
                     AUTH_CONFLICT);
    assert_int_equal(auth_user_delete(&f->a, &CLI, "root1", &err),
                     AUTH_CONFLICT);
    user_add(f, "root2", ROLE_OPERATOR, GOOD_PW);
    assert_int_equal(auth_user_set_role(&f->a, &CLI, "root2", ROLE_ADMIN, &err),
                     AUTH_OK);
    assert_int_equal(auth_user_set_role(&f->a, &CLI, "root1", ROLE_AUDITOR,
                                        &err), AUTH_OK);
    assert_true(audit_has(f, "user.role|root1|admin -> auditor||cli"));
    assert_int_equal(auth_user_set_disabled(&f->a, &CLI, "root2", 1, &err),
                     AUTH_CONFLICT);
    assert_int_equal(auth_user_delete(&f->a, &CLI, "root1", &err), AUTH_OK);
    assert_int_equal(auth_user_delete(&f->a, &CLI, "root1", &err),
                     AUTH_NOT_FOUND);
}

/* ---- R13/R17: TOTP --------------------------------------------------------------- */

static void test_r13_totp_rfc6238_vectors(void **state)
{
    (void)state;
    /* RFC 6238 appendix B, SHA-1, key "12345678901234567890" */
    static const struct { int64_t t; uint32_t code; } V[] = {
        { 59, 94287082 }, { 1111111109, 7081804 }, { 1111111111, 14050471 },
        { 1234567890, 89005924 }, { 2000000000, 69279037 },
        { 20000000000LL, 65353130 },
    };
    const unsigned char *key = (const unsigned char *)"12345678901234567890";
    for (size_t i = 0; i < sizeof(V) / sizeof(V[0]); i++) {
        uint64_t step = (uint64_t)(V[i].t / 30);
        assert_int_equal(totp_code(key, 20, step, 8), V[i].code);
        assert_int_equal(totp_code(key, 20, step, 6), V[i].code % 1000000);
    }
    /* RFC 4226 appendix D (HOTP counter 0 and 9) */
    assert_int_equal(totp_code(key, 20, 0, 6), 755224);
    assert_int_equal(totp_code(key, 20, 9, 6), 520489);
    char b32[64];
    assert_int_equal(totp_base32(key, 20, b32, sizeof(b32)), 0);
    assert_string_equal(b32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_int_equal(totp_base32(key, 20, b32, 32), -1);
}

static void test_r13_totp_enrolment(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct secret *uri = NULL, *codes = NULL;
    unsigned char seed[20];
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    assert_int_equal(auth_totp_enroll(&f->a, &CLI, "alice", &uri, &err),
                     AUTH_OK);
    char *u = sdup(uri);
    assert_true(strncmp(u, "otpauth://totp/Wharf:alice?secret=", 34) == 0);
    assert_non_null(strstr(u, "&issuer=Wharf"));
    assert_non_null(strstr(u, "&digits=6&period=30"));
    free(u);
    uri_seed(uri, seed);
    secret_free(uri);
    /* the store holds the seed sealed, not in clear; not enabled yet */
    struct store_user su;
    assert_int_equal(auth_user_get(&f->a, "alice", &su, &err), AUTH_OK);
    assert_non_null(su.totp_sealed);
    assert_int_equal(su.totp_enabled, 0);
    assert_null(memmem(su.totp_sealed, su.totp_sealed_len, seed, 20));
    store_user_clear(&su);
    /* a wrong first code does not enable it */
    struct secret *c = code_at(seed, T0 + 5 * MIN_MS);
    assert_int_equal(auth_totp_confirm(&f->a, &CLI, "alice", c, &codes, &err),
                     AUTH_DENIED);
    assert_null(codes);
    secret_free(c);
    c = code_at(seed, T0);
    assert_int_equal(auth_totp_confirm(&f->a, &CLI, "alice", c, &codes, &err),
                     AUTH_OK);
    secret_free(c);
    char *list = sdup(codes);
    assert_int_equal(strlen(list), 10 * 20 - 1);
    free(list);
    secret_free(codes);
    assert_int_equal(auth_totp_enroll(&f->a, &CLI, "alice", &uri, &err),
                     AUTH_CONFLICT);
    assert_true(audit_has(f, "mfa.enroll|alice|recovery_codes=10"));
    assert_true(audit_has(f, "mfa.enroll_failure|alice|wrong code"));
    /* disable: codes and seed gone */
    assert_int_equal(auth_totp_disable(&f->a, &CLI, "alice", &err), AUTH_OK);
    assert_int_equal(auth_user_get(&f->a, "alice", &su, &err), AUTH_OK);
    assert_null(su.totp_sealed);
    assert_int_equal(su.totp_enabled, 0);
    assert_int_equal(store_recovery_left(f->st, su.id, &err), 0);
    store_user_clear(&su);
    assert_true(audit_has(f, "mfa.disable|alice"));
}

static void test_r13_totp_reuse_refused(void **state)
{
    struct fx *f = *state;
    unsigned char seed[20];
    const char *why = NULL;
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    char *codes = enroll(f, "alice", seed);     /* used the code of step T0 */
    free(codes);
    char c0[8], c1[8], c3[8];
    snprintf(c0, 8, "%06u", totp_code(seed, 20, T0 / 30000, 6));
    snprintf(c1, 8, "%06u", totp_code(seed, 20, T0 / 30000 + 1, 6));
    snprintf(c3, 8, "%06u", totp_code(seed, 20, T0 / 30000 + 3, 6));
    /* the confirming code cannot be used again */
    assert_int_equal(mfa(f, "alice", c0, NULL, &why), AUTH_DENIED);
    assert_string_equal(why, "reused code");
    /* the next step's code (within the window) works, once */
    assert_int_equal(mfa(f, "alice", c1, NULL, &why), AUTH_OK);
    assert_int_equal(mfa(f, "alice", c1, NULL, &why), AUTH_DENIED);
    assert_string_equal(why, "reused code");
    /* 30 s later: step T0+1 is now the previous step, still refused */
    f->a.now_ms = T0 + 30000;
    assert_int_equal(mfa(f, "alice", c1, NULL, &why), AUTH_DENIED);
    /* out of the +-1 window */
    assert_int_equal(mfa(f, "alice", c3, NULL, &why), AUTH_DENIED);
    assert_string_equal(why, "wrong code");
    f->a.now_ms = T0 + 90000;                   /* step T0+3 is now */
    assert_int_equal(mfa(f, "alice", c3, NULL, &why), AUTH_OK);
    /* malformed codes */
    assert_int_equal(mfa(f, "alice", "12345", NULL, &why), AUTH_DENIED);
    assert_int_equal(mfa(f, "alice", "", NULL, &why), AUTH_DENIED);
}

static void test_r13_recovery_code_single_use(void **state)
{
    struct fx *f = *state;
    unsigned char seed[20];
    struct error err = {0};
    const char *why = NULL;
    int rec = 0;
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    char *codes = enroll(f, "alice", seed);
    char code[10][24];
    char *line = codes;
    for (int i = 0; i < 10; i++) {
        size_t n = strcspn(line, "\n");
        assert_int_equal(n, 19);
        memcpy(code[i], line, n);
        code[i][n] = '\0';
        line += n + 1;
    }
    free(codes);
    assert_int_equal(mfa(f, "alice", code[0], &rec, &why), AUTH_OK);
    assert_int_equal(rec, 1);
    assert_int_equal(mfa(f, "alice", code[0], &rec, &why), AUTH_DENIED);
    assert_int_equal(rec, 0);
    /* typed without dashes and in capitals, still the same code */
    char loose[24];
    size_t k = 0;
    for (const char *p = code[1]; *p; p++)
        if (*p != '-')
            loose[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    loose[k] = '\0';
    assert_int_equal(mfa(f, "alice", loose, &rec, &why), AUTH_OK);
    assert_int_equal(mfa(f, "alice", code[1], &rec, &why), AUTH_DENIED);
    assert_int_equal(mfa(f, "alice", "aaaa-bbbb-cccc-dddd", &rec, &why),
                     AUTH_DENIED);
    assert_int_equal(store_recovery_left(f->st, user_id(f, "alice"), &err), 8);
    assert_true(audit_has(f, "mfa.recovery_used|alice|codes_left=9"));
    assert_true(audit_has(f, "mfa.recovery_used|alice|codes_left=8"));
    /* another user's code is not valid for alice */
    user_add(f, "bob", ROLE_OPERATOR, GOOD_PW);
    char *bcodes = enroll(f, "bob", seed);
    bcodes[19] = '\0';
    assert_int_equal(mfa(f, "alice", bcodes, &rec, &why), AUTH_DENIED);
    assert_int_equal(mfa(f, "bob", bcodes, &rec, &why), AUTH_OK);
    free(bcodes);
    /* regenerating replaces every code */
    struct secret *fresh = NULL;
    assert_int_equal(auth_recovery_regenerate(&f->a, &CLI, "alice", &fresh,
                                              &err), AUTH_OK);
    secret_free(fresh);
    assert_int_equal(mfa(f, "alice", code[2], &rec, &why), AUTH_DENIED);
    assert_int_equal(store_recovery_left(f->st, user_id(f, "alice"), &err),
                     10);
}

static void test_r13_mfa_required_setting(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    assert_int_equal(auth_mfa_required(f->st, ROLE_ADMIN, &err), 1);
    assert_int_equal(auth_mfa_required(f->st, ROLE_OPERATOR, &err), 0);
    setting(f, "mfa_required_admin", "false");
    assert_int_equal(auth_mfa_required(f->st, ROLE_ADMIN, &err), 0);
    setting(f, "mfa_required_admin", "maybe");      /* unreadable: required */
    assert_int_equal(auth_mfa_required(f->st, ROLE_ADMIN, &err), 1);
    setting(f, "mfa_required_all", "true");
    assert_int_equal(auth_mfa_required(f->st, ROLE_VIEWER, &err), 1);
}

/* ---- R13: logins and sessions ------------------------------------------------------- */

static int login(struct fx *f, const char *name, const char *pw,
                 const char *code, struct auth_session_new *s,
                 struct auth_principal *p, struct error *err)
{
    struct secret *sp = sec(pw), *sc = code ? sec(code) : NULL;
    int rc = auth_login(&f->a, name, sp, sc, "192.0.2.7", s, p, err);
    secret_free(sp);
    secret_free(sc);
    return rc;
}

static void test_r13_login_with_totp(void **state)
{
    struct fx *f = *state;
    struct error e1 = {0}, e2 = {0}, err = {0};
    struct auth_session_new s;
    struct auth_principal p;
    unsigned char seed[20];
    user_add(f, "root1", ROLE_ADMIN, GOOD_PW);
    /* no TOTP yet: a session, limited until TOTP is enrolled */
    assert_int_equal(login(f, "root1", GOOD_PW, NULL, &s, &p, &err), AUTH_OK);
    assert_int_equal(p.mfa_required, 1);
    assert_int_equal(p.mfa_done, 0);
    assert_true(auth_principal_limited(&p));
    assert_string_equal(p.actor, "user:root1");
    auth_session_new_clear(&s);
    free(enroll(f, "root1", seed));
    /* wrong password and unknown user: same answer */
    assert_int_equal(login(f, "root1", "wrong-password-123", NULL, &s, &p,
                           &e1), AUTH_DENIED);
    assert_int_equal(login(f, "ghost", GOOD_PW, NULL, &s, &p, &e2),
                     AUTH_DENIED);
    assert_string_equal(e1.msg, e2.msg);
    assert_null(s.id);
    /* right password, no code: ask for it, no session */
    assert_int_equal(login(f, "root1", GOOD_PW, NULL, &s, &p, &err),
                     AUTH_MFA_NEEDED);
    assert_null(s.id);
    assert_int_equal(login(f, "root1", GOOD_PW, "123456", &s, &p, &err),
                     AUTH_DENIED);
    f->a.now_ms = T0 + 30000;
    char c[8];
    snprintf(c, 8, "%06u", totp_code(seed, 20, (T0 + 30000) / 30000, 6));
    assert_int_equal(login(f, "root1", GOOD_PW, c, &s, &p, &err), AUTH_OK);
    assert_int_equal(p.mfa_done, 1);
    assert_false(auth_principal_limited(&p));
    auth_session_new_clear(&s);
    /* the same code again (a replayed login) is refused */
    assert_int_equal(login(f, "root1", GOOD_PW, c, &s, &p, &err), AUTH_DENIED);
    assert_true(audit_has(f, "login.failure|root1|wrong password|192.0.2.7"));
    assert_true(audit_has(f, "login.failure|ghost|unknown user|192.0.2.7"));
    assert_true(audit_has(f, "login.failure|root1|reused code|192.0.2.7"));
    assert_true(audit_has(f, "login.success|root1|mfa=totp"));
}

static void test_r13_session_idle_and_absolute_timeout(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_session_new s;
    struct auth_principal p;
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    int64_t id = user_id(f, "alice");
    assert_int_equal(auth_session_create(&f->a, id, "192.0.2.7", 0, &s, &err),
                     AUTH_OK);
    assert_int_equal(s.expires_at, T0 + 12 * 60 * MIN_MS);
    /* idle: 14 min is fine (and refreshes last_seen), 15 min is not */
    f->a.now_ms = T0 + 14 * MIN_MS;
    assert_int_equal(auth_session_validate(&f->a, s.id, &p, &err), AUTH_OK);
    assert_string_equal(p.name, "alice");
    assert_int_equal(p.role, ROLE_OPERATOR);
    assert_string_equal(p.session, s.handle);
    f->a.now_ms = T0 + 28 * MIN_MS;
    assert_int_equal(auth_session_validate(&f->a, s.id, &p, &err), AUTH_OK);
    f->a.now_ms = T0 + 43 * MIN_MS;
    assert_int_equal(auth_session_validate(&f->a, s.id, &p, &err),
                     AUTH_STALE);
    assert_int_equal(p.user_id, 0);
    assert_int_equal(p.role, ROLE_COUNT);       /* allows nothing */
    auth_session_new_clear(&s);
    /* absolute: kept busy every 10 min, still ends after 12 h */
    f->a.now_ms = T0;
    assert_int_equal(auth_session_create(&f->a, id, NULL, 0, &s, &err),
                     AUTH_OK);
    for (int64_t t = 10; t < 12 * 60; t += 10) {
        f->a.now_ms = T0 + t * MIN_MS;
        if (auth_session_validate(&f->a, s.id, &p, &err) != AUTH_OK)
            fail_msg("refused at %lld min: %s", (long long)t, err.msg);
    }
    f->a.now_ms = T0 + 12 * 60 * MIN_MS;
    assert_int_equal(auth_session_validate(&f->a, s.id, &p, &err),
                     AUTH_STALE);
    /* a shorter idle setting applies */
    f->a.now_ms = T0;
    auth_session_new_clear(&s);
    setting(f, "session_idle_minutes", "5");
    assert_int_equal(auth_load_settings(&f->a, &err), AUTH_OK);
    assert_int_equal(f->a.idle_ms, 5 * MIN_MS);
    assert_int_equal(auth_session_create(&f->a, id, NULL, 0, &s, &err), 0);
    f->a.now_ms = T0 + 5 * MIN_MS;
    assert_int_equal(auth_session_validate(&f->a, s.id, &p, &err),
                     AUTH_STALE);
    auth_session_new_clear(&s);
    setting(f, "session_idle_minutes", "zero");
    assert_int_equal(auth_load_settings(&f->a, &err), AUTH_INVALID);
    /* expired sessions are purged */
    f->a.now_ms = T0 + 13 * 60 * MIN_MS;
    int purged = 0;
    assert_int_equal(auth_session_purge(&f->a, &purged, &err), AUTH_OK);
    assert_int_equal(purged, 3);
}

static void test_r13_session_csrf_and_revoke(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_session_new s1, s2, s3;
    struct auth_principal p;
    const struct auth_actor admin = { "user:root1", "192.0.2.9" };
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    user_add(f, "bob", ROLE_VIEWER, GOOD_PW);
    int64_t alice = user_id(f, "alice"), bob = user_id(f, "bob");
    assert_int_equal(auth_session_create(&f->a, alice, NULL, 0, &s1, &err), 0);
    assert_int_equal(auth_session_create(&f->a, alice, NULL, 0, &s2, &err), 0);
    assert_int_equal(auth_session_create(&f->a, bob, NULL, 0, &s3, &err), 0);
    assert_int_equal(secret_len(s1.id), 43);
    assert_false(secret_equal(s1.id, s2.id));
    assert_int_equal(auth_session_validate(&f->a, s1.id, &p, &err), AUTH_OK);
    assert_true(auth_csrf_check(&p, s1.csrf));
    assert_false(auth_csrf_check(&p, s2.csrf));
    assert_false(auth_csrf_check(&p, NULL));
    assert_false(auth_csrf_check(&p, s1.id));
    /* listing */
    struct store_session *list;
    size_t n;
    assert_int_equal(auth_session_list(&f->a, alice, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    store_sessions_free(list, n);
    assert_int_equal(auth_session_list(&f->a, 0, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    store_sessions_free(list, n);
    /* bob cannot revoke alice's session as "his own" */
    assert_int_equal(auth_session_revoke(&f->a, &admin, s1.handle, bob, &err),
                     AUTH_NOT_FOUND);
    assert_int_equal(auth_session_revoke(&f->a, &admin, s1.handle, alice,
                                         &err), AUTH_OK);
    assert_int_equal(auth_session_validate(&f->a, s1.id, &p, &err),
                     AUTH_STALE);
    assert_int_equal(auth_session_revoke(&f->a, &admin, s1.handle, 0, &err),
                     AUTH_NOT_FOUND);
    char expect[128];
    snprintf(expect, sizeof(expect), "session.revoke|alice|session=%.16s|"
             "192.0.2.9|user:root1", s1.handle);
    assert_true(audit_has(f, expect));
    /* logout */
    assert_int_equal(auth_logout(&f->a, &admin, s2.id, &err), AUTH_OK);
    assert_int_equal(auth_session_validate(&f->a, s2.id, &p, &err),
                     AUTH_STALE);
    /* disabling bob ends his session */
    assert_int_equal(auth_session_validate(&f->a, s3.id, &p, &err), AUTH_OK);
    assert_int_equal(auth_user_set_disabled(&f->a, &admin, "bob", 1, &err),
                     AUTH_OK);
    assert_int_equal(auth_session_validate(&f->a, s3.id, &p, &err),
                     AUTH_STALE);
    assert_true(audit_has(f, "user.disable|bob|sessions_revoked=1"));
    /* a garbage id */
    struct secret *junk = sec("not-a-session");
    assert_int_equal(auth_session_validate(&f->a, junk, &p, &err),
                     AUTH_DENIED);
    secret_free(junk);
    auth_session_new_clear(&s1);
    auth_session_new_clear(&s2);
    auth_session_new_clear(&s3);
}

/* ---- R4: API tokens ------------------------------------------------------------- */

static void test_r04_token_revoked_refused(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_token_new t;
    struct auth_principal p;
    const struct auth_actor admin = { "user:root1", NULL };
    user_add(f, "root1", ROLE_ADMIN, GOOD_PW);
    assert_int_equal(auth_token_create(&f->a, &admin, user_id(f, "root1"),
                                       "ci", ROLE_OPERATOR, 30, &t, &err),
                     AUTH_OK);
    assert_int_equal(secret_len(t.token), 49);
    assert_memory_equal(secret_data(t.token), "wharf_", 6);
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err), AUTH_OK);
    assert_int_equal(p.kind, AUTH_KIND_TOKEN);
    assert_int_equal(p.role, ROLE_OPERATOR);
    assert_string_equal(p.token_id, t.id);
    assert_string_equal(p.name, "ci");
    assert_false(auth_principal_limited(&p));
    char actor[64];
    snprintf(actor, sizeof(actor), "token:%s", t.id);
    assert_string_equal(p.actor, actor);
    assert_int_equal(auth_token_revoke(&f->a, &admin, t.id, &err), AUTH_OK);
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err),
                     AUTH_STALE);
    assert_int_equal(p.role, ROLE_COUNT);
    assert_false(rbac_allows(p.role, PERM_FLOW_READ));
    assert_int_equal(auth_token_revoke(&f->a, &admin, t.id, &err),
                     AUTH_NOT_FOUND);
    char expect[128];
    snprintf(expect, sizeof(expect), "token.revoke|%s||", t.id);
    assert_true(audit_has(f, expect));
    /* the stored row keeps no value: list shows id, name, role only */
    struct store_token *list;
    size_t n;
    assert_int_equal(auth_token_list(&f->a, &list, &n, &err), AUTH_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].created_by, "user:root1");
    assert_string_equal(list[0].owner, "root1");
    assert_true(list[0].revoked_at > 0);
    store_tokens_free(list, n);
    auth_token_new_clear(&t);
}

static void test_r04_token_expired_refused(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_token_new t, forever;
    struct auth_principal p;
    user_add(f, "vera", ROLE_VIEWER, GOOD_PW);
    int64_t vera = user_id(f, "vera");
    assert_int_equal(auth_token_create(&f->a, &CLI, vera, NULL, ROLE_VIEWER, 1,
                                       &t, &err), AUTH_OK);
    assert_int_equal(t.expires_at, T0 + 86400000LL);
    assert_int_equal(auth_token_create(&f->a, &CLI, vera, "x", ROLE_VIEWER, 0,
                                       &forever, &err), AUTH_OK);
    assert_int_equal(forever.expires_at, 0);
    f->a.now_ms = T0 + 86400000LL - 1;
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err), AUTH_OK);
    struct store_token row;
    assert_int_equal(store_token_get(f->st, t.id, &row, &err), 0);
    assert_int_equal(row.last_used_at, T0 + 86400000LL - 1);
    store_token_clear(&row);
    f->a.now_ms = T0 + 86400000LL;
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err),
                     AUTH_STALE);
    f->a.now_ms = T0 + 3650 * 86400000LL;
    assert_int_equal(auth_token_validate(&f->a, forever.token, &p, &err),
                     AUTH_OK);
    /* bad arguments and malformed or unknown tokens */
    struct auth_token_new bad;
    assert_int_equal(auth_token_create(&f->a, &CLI, vera, "x", ROLE_VIEWER, -1,
                                       &bad, &err), AUTH_INVALID);
    assert_int_equal(auth_token_create(&f->a, &CLI, vera, "x", ROLE_VIEWER,
                                       3651, &bad, &err), AUTH_INVALID);
    assert_int_equal(auth_token_create(&f->a, &CLI, vera, "a\nb", ROLE_VIEWER,
                                       1, &bad, &err), AUTH_INVALID);
    struct secret *s;
    char *v = sdup(forever.token);
    v[10] = v[10] == 'A' ? 'B' : 'A';
    s = sec(v);
    assert_int_equal(auth_token_validate(&f->a, s, &p, &err), AUTH_DENIED);
    secret_free(s);
    s = sec(v + 6);
    assert_int_equal(auth_token_validate(&f->a, s, &p, &err), AUTH_DENIED);
    secret_free(s);
    free(v);
    auth_token_new_clear(&t);
    auth_token_new_clear(&forever);
}

/* Issue item 3: a token acts as its owner. Its effective role is
 * min(token role, the owner's current role); it stops (AUTH_STALE: a
 * known token, not counted as an attack) while the owner is disabled, and
 * deleting the owner revokes it in the same transaction (audited). */
static void test_r14_token_acts_as_owner(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_token_new adm, op;
    struct auth_principal p;
    const struct auth_actor who = { "user:root1", NULL };
    user_add(f, "root1", ROLE_ADMIN, GOOD_PW);
    user_add(f, "ada", ROLE_ADMIN, GOOD_PW);
    int64_t ada = user_id(f, "ada");
    assert_int_equal(auth_token_create(&f->a, &who, ada, "robot", ROLE_ADMIN,
                                       30, &adm, &err), AUTH_OK);
    assert_int_equal(auth_token_create(&f->a, &who, ada, "ops", ROLE_OPERATOR,
                                       30, &op, &err), AUTH_OK);
    assert_int_equal(auth_token_validate(&f->a, adm.token, &p, &err), AUTH_OK);
    assert_int_equal(p.role, ROLE_ADMIN);
    assert_int_equal(p.user_id, ada);
    assert_string_equal(p.user, "ada");
    assert_string_equal(p.name, "robot");
    assert_true(audit_has(f, "token.create|"));
    assert_true(audit_has(f, "role=admin owner=ada expires="));
    /* disabled: refused as stale; enabled again: back */
    assert_int_equal(auth_user_set_disabled(&f->a, &who, "ada", 1, &err), 0);
    assert_int_equal(auth_token_validate(&f->a, adm.token, &p, &err),
                     AUTH_STALE);
    assert_int_equal(p.role, ROLE_COUNT);
    assert_false(rbac_allows(p.role, PERM_FLOW_READ));
    assert_string_equal(err.msg, "the API token is unknown, expired or "
                        "revoked");
    assert_int_equal(auth_user_set_disabled(&f->a, &who, "ada", 0, &err), 0);
    assert_int_equal(auth_token_validate(&f->a, adm.token, &p, &err), AUTH_OK);
    /* demoted: the admin token acts as a viewer; an operator token of an
     * auditor owner gets what both allow (viewer) */
    assert_int_equal(auth_user_set_role(&f->a, &who, "ada", ROLE_VIEWER,
                                        &err), AUTH_OK);
    assert_int_equal(auth_token_validate(&f->a, adm.token, &p, &err), AUTH_OK);
    assert_int_equal(p.role, ROLE_VIEWER);
    assert_false(rbac_allows(p.role, PERM_USER_WRITE));
    assert_false(rbac_allows(p.role, PERM_TOKEN_WRITE));
    assert_int_equal(auth_user_set_role(&f->a, &who, "ada", ROLE_AUDITOR,
                                        &err), AUTH_OK);
    assert_int_equal(auth_token_validate(&f->a, op.token, &p, &err), AUTH_OK);
    assert_int_equal(p.role, ROLE_VIEWER);
    assert_false(rbac_allows(p.role, PERM_FLOW_WRITE));
    assert_false(rbac_allows(p.role, PERM_AUDIT_READ));
    assert_int_equal(auth_token_validate(&f->a, adm.token, &p, &err), AUTH_OK);
    assert_int_equal(p.role, ROLE_AUDITOR);
    /* nobody gets a token above their role, or without an enabled owner */
    struct auth_token_new bad;
    assert_int_equal(auth_token_create(&f->a, &who, ada, "x", ROLE_OPERATOR,
                                       1, &bad, &err), AUTH_INVALID);
    assert_int_equal(auth_token_create(&f->a, &who, 0, "x", ROLE_VIEWER, 1,
                                       &bad, &err), AUTH_INVALID);
    assert_int_equal(auth_token_create(&f->a, &who, 9999, "x", ROLE_VIEWER, 1,
                                       &bad, &err), AUTH_INVALID);
    /* deleted: both tokens revoked with the user, audited */
    assert_int_equal(auth_user_delete(&f->a, &who, "ada", &err), AUTH_OK);
    assert_true(audit_has(f, "user.delete|ada|tokens_revoked=2"));
    assert_int_equal(auth_token_validate(&f->a, adm.token, &p, &err),
                     AUTH_STALE);
    assert_int_equal(auth_token_validate(&f->a, op.token, &p, &err),
                     AUTH_STALE);
    struct store_token *list;
    size_t n;
    assert_int_equal(auth_token_list(&f->a, &list, &n, &err), AUTH_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_true(list[i].revoked_at > 0);
        assert_null(list[i].owner);
    }
    store_tokens_free(list, n);
    /* a new user who happens to get a recycled name does not revive them */
    user_add(f, "ada", ROLE_ADMIN, GOOD_PW);
    assert_int_equal(auth_token_validate(&f->a, adm.token, &p, &err),
                     AUTH_STALE);
    auth_token_new_clear(&adm);
    auth_token_new_clear(&op);
}

/* A token row without an owner (made before tokens had owners, by the
 * CLI) is refused: migration 6 gives old rows the user or token that made
 * them, and nobody else. */
static void test_r14_token_without_owner_refused(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_token_new t;
    struct auth_principal p;
    user_add(f, "root1", ROLE_ADMIN, GOOD_PW);
    assert_int_equal(auth_token_create(&f->a, &CLI, user_id(f, "root1"), "old",
                                       ROLE_ADMIN, 0, &t, &err), AUTH_OK);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE tokens SET owner_id = NULL",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err),
                     AUTH_STALE);
    assert_int_equal(p.role, ROLE_COUNT);
    auth_token_new_clear(&t);
}

/* The webhook replay guard's rows (store_replay_*): a claim holds across
 * process runs once done; a pending claim of a dead run is void; a
 * released or expired claim can be taken again. */
static void test_m6_replay_guard_claims(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    const char *sig = "ab12";
    int64_t until = T0 + 300000;
    /* run-a: a process with its own connection */
    struct store *a = store_open(f->db, &err);
    if (a == NULL)
        fail_msg("open: %s", err.msg);
    assert_int_equal(store_replay_claim(a, "hh", sig, until, "run-a", T0,
                                        &err), 0);
    /* pending in this run: a concurrent replay */
    assert_int_equal(store_replay_claim(a, "hh", sig, until, "run-a", T0,
                                        &err), 1);
    /* another connector's namespace */
    assert_int_equal(store_replay_claim(a, "other", sig, until, "run-a",
                                        T0, &err), 0);
    /* run-a died before storing: run-b may take it (on PostgreSQL once the
     * server has seen its connection end) */
    store_close(a);
    int rc = 1;
    for (int i = 0; i < 200 && rc == 1; i++)
        if ((rc = store_replay_claim(f->st, "hh", sig, until, "run-b", T0,
                                     &err)) == 1)
            usleep(10000);
    assert_int_equal(rc, 0);
    assert_int_equal(store_replay_done(f->st, "hh", sig, &err), 0);
    /* done: refused in every later run, until it expires */
    assert_int_equal(store_replay_claim(f->st, "hh", sig, until, "run-c",
                                        T0 + 1000, &err), 1);
    assert_int_equal(store_replay_release(f->st, "hh", sig, "run-c", &err), 0);
    assert_int_equal(store_replay_claim(f->st, "hh", sig, until, "run-c",
                                        T0 + 1000, &err), 1);
    assert_int_equal(store_replay_claim(f->st, "hh", sig, until + 300000,
                                        "run-c", until + 1, &err), 0);
    /* released: free again */
    assert_int_equal(store_replay_release(f->st, "hh", sig, "run-c", &err), 0);
    assert_int_equal(store_replay_claim(f->st, "hh", sig, until, "run-d", T0,
                                        &err), 0);
    assert_int_equal(store_replay_prune(f->st, until + 400000, &err), 0);
    assert_int_equal(store_replay_claim(f->st, "other", sig, until, "run-a",
                                        T0, &err), 0);
}

static void test_r04_auth_forms_restricted(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_token_new t;
    struct auth_principal p;
    struct auth_session_new s;
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    assert_int_equal(auth_token_create(&f->a, &CLI, user_id(f, "alice"), "x",
                                       ROLE_VIEWER, 1, &t, &err), AUTH_OK);
    setting(f, "auth_forms", "password, oidc");
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err),
                     AUTH_STALE);
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err), AUTH_OK);
    auth_session_new_clear(&s);
    setting(f, "auth_forms", "token,oidc");
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err), AUTH_OK);
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err),
                     AUTH_DENIED);
    auth_token_new_clear(&t);
}

/* ---- R22: logins cannot be used to exhaust memory or guess at scale --------------- */

/* n failed logins of name with a wrong password; all must be AUTH_DENIED. */
static void wrong_logins(struct fx *f, const char *name, int n)
{
    struct auth_session_new s;
    struct auth_principal p;
    struct error err = {0};
    for (int i = 0; i < n; i++)
        if (login(f, name, "wrong-password-123", NULL, &s, &p, &err) !=
            AUTH_DENIED)
            fail_msg("wrong login %d of %s: not refused: %s", i + 1, name,
                     err.msg);
}

/* After throttle_after failures of one name (from any address), that name
 * is refused without a password check, for a lock that doubles; unknown
 * and invalid names alike; TOTP failures count; success clears. */
static void test_r22_login_throttle_per_account(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_session_new s;
    struct auth_principal p;
    f->a.throttle_after = 3;
    f->a.throttle_window_ms = 15 * MIN_MS;
    f->a.throttle_lock_ms = MIN_MS;
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    wrong_logins(f, "alice", 3);
    assert_true(audit_has(f, "login.throttle|alice|failures=3 seconds=60 "
                             "level=1|192.0.2.7"));
    /* locked: even the right password is refused, and before any Argon2id
     * work: with every password slot taken the answer is still THROTTLED,
     * not BUSY */
    auth_password_limit(1, 0);
    assert_int_equal(auth_password_slot_take(), 0);
    f->a.now_ms = T0 + 10000;
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err),
                     AUTH_THROTTLED);
    assert_int_equal(p.retry_after_ms, 50000);
    assert_null(s.id);
    assert_null(strstr(err.msg, "alice"));
    auth_password_slot_give();
    auth_password_limit(AUTH_PASSWORD_SLOTS, AUTH_PASSWORD_WAIT_MS);
    assert_true(audit_has(f, "login.failure|alice|account throttled"));
    /* the lock ends; one more failure locks it again, for twice as long */
    f->a.now_ms = T0 + MIN_MS;
    wrong_logins(f, "alice", 1);
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err),
                     AUTH_THROTTLED);
    assert_int_equal(p.retry_after_ms, 2 * MIN_MS);
    assert_true(audit_has(f, "login.throttle|alice|failures=4 seconds=120 "
                             "level=2"));
    /* a success after the lock clears the count */
    f->a.now_ms = T0 + 3 * MIN_MS;
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err), AUTH_OK);
    auth_session_new_clear(&s);
    wrong_logins(f, "alice", 2);
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err), AUTH_OK);
    auth_session_new_clear(&s);
    /* unknown names are throttled the same way (no enumeration), and every
     * invalid name shares one row */
    wrong_logins(f, "ghost", 3);
    assert_int_equal(login(f, "ghost", GOOD_PW, NULL, &s, &p, &err),
                     AUTH_THROTTLED);
    assert_int_equal(p.retry_after_ms, MIN_MS);
    wrong_logins(f, "Not A Name", 2);
    wrong_logins(f, "also/invalid", 1);
    assert_int_equal(login(f, "!!", GOOD_PW, NULL, &s, &p, &err),
                     AUTH_THROTTLED);
    /* other names are not affected */
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err), AUTH_OK);
    auth_session_new_clear(&s);
    /* failures counted in the window only */
    user_add(f, "bob", ROLE_VIEWER, GOOD_PW);
    wrong_logins(f, "bob", 2);
    f->a.now_ms += 15 * MIN_MS;
    wrong_logins(f, "bob", 2);
    assert_int_equal(login(f, "bob", GOOD_PW, NULL, &s, &p, &err), AUTH_OK);
    auth_session_new_clear(&s);
    /* the second factor: wrong codes with the right password count too */
    unsigned char seed[20];
    free(enroll(f, "bob", seed));
    f->a.now_ms += 30000;               /* the enrolment used this step */
    char c[8], wrong[8];
    uint32_t good = totp_code(seed, 20, (uint64_t)(f->a.now_ms / 30000), 6);
    snprintf(c, 8, "%06u", good);
    snprintf(wrong, 8, "%06u", (good + 500000) % 1000000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(f, "bob", GOOD_PW, wrong, &s, &p, &err),
                         AUTH_DENIED);
    assert_int_equal(login(f, "bob", GOOD_PW, c, &s, &p, &err),
                     AUTH_THROTTLED);
    /* off: never throttled */
    f->a.throttle_after = 0;
    assert_int_equal(login(f, "bob", GOOD_PW, c, &s, &p, &err), AUTH_OK);
    auth_session_new_clear(&s);
}

/* At most `slots` Argon2id computations at once: a caller that finds them
 * all taken waits at most wait_ms, then gets AUTH_BUSY (nothing checked,
 * nothing counted as a failure). */
static void test_r22_password_checks_bounded(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct auth_session_new s;
    struct auth_principal p;
    f->a.throttle_after = 1;            /* a counted failure would lock */
    user_add(f, "alice", ROLE_OPERATOR, GOOD_PW);
    auth_password_limit(2, 20);
    assert_int_equal(auth_password_slot_take(), 0);
    assert_int_equal(auth_password_slot_take(), 0);
    assert_int_equal(auth_password_slot_take(), -1);
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err),
                     AUTH_BUSY);
    assert_int_equal(p.retry_after_ms, 1000);
    assert_null(s.id);
    char *hash = NULL;
    struct secret *pw = sec(GOOD_PW);
    assert_int_equal(auth_password_hash(pw, &hash, &err), AUTH_BUSY);
    assert_null(hash);
    assert_int_equal(auth_password_verify(
        "$argon2id$v=19$m=65536,t=3,p=1$CzBVep/E6Q4zWH2ix+wRNg$"
        "B3Lg0mDp/i9ARiImsyKITEt3q36bO8hUzdpQlENXzmk", pw), -1);
    assert_int_equal(auth_user_password(&f->a, &CLI, "alice", pw, pw, 0,
                                        NULL, &err), AUTH_BUSY);
    auth_password_slot_give();
    assert_int_equal(login(f, "alice", GOOD_PW, NULL, &s, &p, &err), AUTH_OK);
    auth_session_new_clear(&s);
    auth_password_slot_give();
    assert_false(audit_has(f, "login.failure"));
    assert_false(audit_has(f, "login.throttle"));
    auth_password_limit(AUTH_PASSWORD_SLOTS, AUTH_PASSWORD_WAIT_MS);
    secret_free(pw);
}

/* ---- R6: no secret in the log, the audit trail or the database ------------------- */

struct needles {
    char *v[64];
    int n;
};

static void keep(struct needles *nd, const struct secret *s)
{
    assert_true(nd->n < 64);
    nd->v[nd->n++] = sdup(s);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        *len = 0;
        return calloc(1, 1);
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void assert_absent(const char *what, const char *hay, size_t n,
                          const struct needles *nd)
{
    for (int i = 0; i < nd->n; i++)
        if (memmem(hay, n, nd->v[i], strlen(nd->v[i])) != NULL)
            fail_msg("secret #%d (%zu bytes) found in %s", i,
                     strlen(nd->v[i]), what);
}

static void test_r06_no_secret_in_audit_or_log(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct needles nd = {0};
    struct secret *pw = sec("orchid-lantern-meadow-19"), *otp = NULL;
    struct secret *wrong = sec("mistyped-lantern-meadow-91");
    keep(&nd, pw);
    keep(&nd, wrong);
    assert_int_equal(auth_user_create(&f->a, &CLI, "alice", ROLE_ADMIN, pw,
                                      NULL, &err), AUTH_OK);
    assert_int_equal(auth_user_create(&f->a, &CLI, "bob", ROLE_OPERATOR, NULL,
                                      &otp, &err), AUTH_OK);
    keep(&nd, otp);
    /* TOTP: the URI, the base32 seed, the recovery codes */
    struct secret *uri = NULL, *codes = NULL;
    unsigned char seed[20];
    assert_int_equal(auth_totp_enroll(&f->a, &CLI, "alice", &uri, &err), 0);
    keep(&nd, uri);
    char *u = sdup(uri), *b32 = strstr(u, "secret=") + 7;
    b32[32] = '\0';
    struct secret *b = sec(b32);
    keep(&nd, b);
    secret_free(b);
    free(u);
    uri_seed(uri, seed);
    struct secret *c = code_at(seed, T0);
    assert_int_equal(auth_totp_confirm(&f->a, &CLI, "alice", c, &codes, &err),
                     0);
    secret_free(c);
    char *cl = sdup(codes);
    for (char *line = strtok_r(cl, "\n", &b32); line;
         line = strtok_r(NULL, "\n", &b32)) {
        struct secret *one = sec(line);
        keep(&nd, one);
        secret_free(one);
    }
    free(cl);
    /* logins: a failure with a wrong password, a success with a recovery
     * code (the session id and CSRF token), a token */
    struct auth_session_new s;
    struct auth_principal p;
    assert_int_equal(auth_login(&f->a, "alice", wrong, NULL, "192.0.2.7", &s,
                                &p, &err), AUTH_DENIED);
    char first[20];
    memcpy(first, secret_data(codes), 19);
    first[19] = '\0';
    struct secret *rc = sec(first);
    assert_int_equal(auth_login(&f->a, "alice", pw, rc, "192.0.2.7", &s, &p,
                                &err), AUTH_OK);
    secret_free(rc);
    keep(&nd, s.id);
    keep(&nd, s.csrf);
    assert_int_equal(auth_session_validate(&f->a, s.id, &p, &err), AUTH_OK);
    struct auth_token_new t;
    assert_int_equal(auth_token_create(&f->a, &CLI, user_id(f, "alice"), "ci",
                                       ROLE_VIEWER, 1, &t, &err), AUTH_OK);
    keep(&nd, t.token);
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err), AUTH_OK);
    assert_int_equal(auth_token_revoke(&f->a, &CLI, t.id, &err), AUTH_OK);
    assert_int_equal(auth_token_validate(&f->a, t.token, &p, &err),
                     AUTH_STALE);
    assert_int_equal(auth_logout(&f->a, &CLI, s.id, &err), AUTH_OK);
    assert_int_equal(auth_session_validate(&f->a, s.id, &p, &err),
                     AUTH_STALE);
    assert_null(strstr(err.msg, first));
    /* the searches themselves must be able to find something */
    assert_true(nd.n >= 17);
    assert_true(audit_has(f, "login.success|alice|mfa=recovery-code"));
    log_close();
    char path[400];
    size_t n;
    snprintf(path, sizeof(path), "%s/wharf.log", f->logdir);
    char *logtext = slurp(path, &n);
    assert_non_null(strstr(logtext, "login.failure alice"));
    assert_absent("the log", logtext, n, &nd);
    free(logtext);
    char *audit = audit_dump(f);
    assert_absent("the audit trail", audit, strlen(audit), &nd);
    free(audit);
    store_close(f->st);                 /* checkpoint the WAL into wharf.db */
    f->st = NULL;
    if (g_pg) {                         /* every row, as pg_dump writes it */
        char cmd[1200];
        snprintf(path, sizeof(path), "%s/dump.sql", f->dir);
        snprintf(cmd, sizeof(cmd), "pg_dump --data-only -f '%s' '%s'", path,
                 f->db);
        assert_int_equal(system(cmd), 0);
    }
    char *db = slurp(g_pg ? path : f->db, &n);
    assert_true(n > 0);
    assert_non_null(memmem(db, n, "login.failure", 13));
    assert_absent("the database", db, n, &nd);
    free(db);
    if (!g_pg) {
        snprintf(path, sizeof(path), "%s-wal", f->db);
        db = slurp(path, &n);
        assert_absent("the WAL", db, n, &nd);
        free(db);
    }
    for (int i = 0; i < nd.n; i++)
        free(nd.v[i]);
    secret_free(codes);
    secret_free(uri);
    secret_free(pw);
    secret_free(wrong);
    secret_free(otp);
    auth_session_new_clear(&s);
    auth_token_new_clear(&t);
}

/* ---- auth_store.h itself, on both backends ------------------------------------ */

#define MUST(call, e) do { if ((call) != 0) fail_msg("%s: %s", #call, \
                                                     (e).msg); } while (0)

/* A 64-hex handle made of one repeated character (tests only). */
static void hex64(char out[STORE_HASH_HEX + 1], char c)
{
    memset(out, c, STORE_HASH_HEX);
    out[STORE_HASH_HEX] = '\0';
}

static int64_t store_user_new(struct store *st, const char *name,
                              const char *role)
{
    struct error err = {0};
    int64_t id = 0;
    MUST(store_user_create(st, name, role, "$argon2id$x", 0, T0, &id, &err),
         err);
    assert_true(id > 0);
    return id;
}

static void test_r13_store_users(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    int64_t alice = store_user_new(f->st, "alice", "admin");
    int64_t bob = store_user_new(f->st, "bob", "viewer");
    int64_t dup = 0;
    assert_int_equal(store_user_create(f->st, "alice", "viewer", NULL, 0, T0,
                                       &dup, &err), 1);
    assert_int_equal(dup, 0);
    struct store_user u;
    MUST(store_user_get_by_name(f->st, "alice", &u, &err), err);
    assert_int_equal(u.id, alice);
    assert_string_equal(u.role, "admin");
    assert_string_equal(u.password_hash, "$argon2id$x");
    assert_null(u.totp_sealed);
    assert_null(u.oidc_subject);
    assert_int_equal(u.created_at, T0);
    store_user_clear(&u);
    assert_int_equal(store_user_get_by_name(f->st, "carol", &u, &err), 1);
    assert_int_equal(store_user_get_by_id(f->st, 9999, &u, &err), 1);
    /* a sealed seed with a NUL inside comes back byte for byte */
    const unsigned char seed[5] = { 1, 0, 255, 7, 0 };
    MUST(store_user_set_totp(f->st, bob, seed, sizeof(seed), T0 + 1, &err),
         err);
    MUST(store_user_enable_totp(f->st, bob, T0 + 2, &err), err);
    assert_int_equal(store_user_enable_totp(f->st, alice, T0, &err), 1);
    assert_int_equal(store_user_totp_step(f->st, bob, 10, &err), 0);
    assert_int_equal(store_user_totp_step(f->st, bob, 10, &err), 1);
    assert_int_equal(store_user_totp_step(f->st, bob, 9, &err), 1);
    MUST(store_user_get_by_id(f->st, bob, &u, &err), err);
    assert_int_equal(u.totp_sealed_len, sizeof(seed));
    assert_memory_equal(u.totp_sealed, seed, sizeof(seed));
    assert_int_equal(u.totp_enabled, 1);
    assert_int_equal(u.totp_last_step, 10);
    assert_int_equal(u.updated_at, T0 + 2);
    store_user_clear(&u);
    MUST(store_user_set_totp(f->st, bob, NULL, 0, T0 + 3, &err), err);
    MUST(store_user_get_by_id(f->st, bob, &u, &err), err);
    assert_null(u.totp_sealed);
    assert_int_equal(u.totp_enabled, 0);
    assert_int_equal(u.totp_last_step, 0);
    store_user_clear(&u);
    /* OIDC subject */
    MUST(store_user_set_subject(f->st, bob, "https://idp|42", T0, &err), err);
    assert_int_equal(store_user_set_subject(f->st, 9999, "x|y", T0, &err), 1);
    MUST(store_user_get_by_subject(f->st, "https://idp|42", &u, &err), err);
    assert_string_equal(u.name, "bob");
    store_user_clear(&u);
    assert_int_equal(store_user_get_by_subject(f->st, "https://idp|4", &u,
                                               &err), 1);
    /* updates of a user by id; 1 when there is none */
    MUST(store_user_set_role(f->st, bob, "operator", T0, &err), err);
    MUST(store_user_set_password(f->st, bob, "$argon2id$y", 1, T0, &err), err);
    /* the last enabled administrator is neither disabled nor demoted, nor
     * deleted: 2, nothing written (test_r21_two_nodes_never_demote_...) */
    assert_int_equal(store_user_set_disabled(f->st, alice, 1, T0, &err), 2);
    assert_int_equal(store_user_set_role(f->st, alice, "viewer", T0, &err), 2);
    assert_int_equal(store_user_delete(f->st, alice, T0, NULL, &err), 2);
    assert_int_equal(store_user_set_role(f->st, 9999, "admin", T0, &err), 1);
    assert_int_equal(store_user_set_password(f->st, 9999, "h", 0, T0, &err),
                     1);
    assert_int_equal(store_user_set_disabled(f->st, 9999, 1, T0, &err), 1);
    assert_int_equal(store_user_count_role(f->st, "admin", &err), 1);
    assert_int_equal(store_user_count_role(f->st, "operator", &err), 1);
    /* a listing: by name, without password hashes or seeds */
    struct store_user *all;
    size_t n;
    MUST(store_user_list(f->st, &all, &n, &err), err);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].name, "alice");
    assert_int_equal(all[0].disabled, 0);
    assert_string_equal(all[1].name, "bob");
    assert_int_equal(all[1].must_change, 1);
    assert_null(all[1].password_hash);
    assert_string_equal(all[1].oidc_subject, "https://idp|42");
    store_users_free(all, n);
    /* delete: the user's live tokens revoked, sessions and codes gone */
    struct store_token t = { .name = "ci", .role = "viewer",
                             .created_by = "cli", .created_at = T0,
                             .owner_id = bob };
    snprintf(t.id, sizeof(t.id), "01900000-0000-7000-8000-000000000001");
    char th[STORE_HASH_HEX + 1], sh[STORE_HASH_HEX + 1];
    hex64(th, 'a');
    hex64(sh, 'b');
    MUST(store_token_create(f->st, &t, th, &err), err);
    struct store_session x = { .user_id = bob, .created_at = T0,
                               .last_seen_at = T0, .expires_at = T0 + 1000 };
    memcpy(x.id_hash, sh, sizeof(sh));
    memcpy(x.csrf_hash, th, sizeof(th));
    MUST(store_session_create(f->st, &x, &err), err);
    const char *codes[] = { "c1" };
    MUST(store_recovery_replace(f->st, bob, codes, 1, T0, &err), err);
    int revoked = -1;
    MUST(store_user_delete(f->st, bob, T0 + 5, &revoked, &err), err);
    assert_int_equal(revoked, 1);
    assert_int_equal(store_user_delete(f->st, bob, T0 + 5, &revoked, &err), 1);
    struct store_session got;
    assert_int_equal(store_session_get(f->st, sh, &got, &err), 1);
    assert_int_equal(store_recovery_left(f->st, bob, &err), 0);
    struct store_token tt;
    MUST(store_token_get(f->st, t.id, &tt, &err), err);
    assert_int_equal(tt.revoked_at, T0 + 5);
    assert_int_equal(tt.owner_id, 0);
    assert_null(tt.owner);
    store_token_clear(&tt);
}

static void test_r13_store_recovery_codes(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    int64_t id = store_user_new(f->st, "alice", "admin");
    const char *first[] = { "h1", "h2", "h3", "h3" };
    MUST(store_recovery_replace(f->st, id, first, 4, T0, &err), err);
    assert_int_equal(store_recovery_left(f->st, id, &err), 3);
    assert_int_equal(store_recovery_consume(f->st, id, "h2", T0, &err), 0);
    assert_int_equal(store_recovery_consume(f->st, id, "h2", T0, &err), 1);
    assert_int_equal(store_recovery_consume(f->st, id, "nope", T0, &err), 1);
    assert_int_equal(store_recovery_consume(f->st, id + 1, "h1", T0, &err), 1);
    assert_int_equal(store_recovery_left(f->st, id, &err), 2);
    const char *second[] = { "k1", "k2" };
    MUST(store_recovery_replace(f->st, id, second, 2, T0, &err), err);
    assert_int_equal(store_recovery_consume(f->st, id, "h1", T0, &err), 1);
    assert_int_equal(store_recovery_left(f->st, id, &err), 2);
    MUST(store_recovery_clear(f->st, id, &err), err);
    assert_int_equal(store_recovery_left(f->st, id, &err), 0);
}

static void session_make(struct store *st, char c, int64_t user,
                         int64_t created, int64_t expires)
{
    struct error err = {0};
    struct store_session x = { .user_id = user, .address = "192.0.2.9",
                               .created_at = created,
                               .last_seen_at = created, .expires_at = expires };
    hex64(x.id_hash, c);
    hex64(x.csrf_hash, 'f');
    MUST(store_session_create(st, &x, &err), err);
}

static void test_r13_store_sessions(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    int64_t a = store_user_new(f->st, "alice", "admin");
    int64_t b = store_user_new(f->st, "bob", "viewer");
    char h1[STORE_HASH_HEX + 1], h2[STORE_HASH_HEX + 1],
         h3[STORE_HASH_HEX + 1], h4[STORE_HASH_HEX + 1];
    hex64(h1, '1');
    hex64(h2, '2');
    hex64(h3, '3');
    hex64(h4, '4');
    session_make(f->st, '1', a, T0, T0 + 100000);
    session_make(f->st, '2', a, T0 + 10, T0 + 100000);
    session_make(f->st, '3', b, T0 + 20, T0 + 100000);
    session_make(f->st, '4', a, T0 + 30, T0 + 50);
    struct store_session x;
    MUST(store_session_get(f->st, h1, &x, &err), err);
    assert_int_equal(x.user_id, a);
    assert_string_equal(x.address, "192.0.2.9");
    assert_int_equal(x.mfa, 0);
    assert_int_equal(x.revoked_at, 0);
    store_session_clear(&x);
    MUST(store_session_touch(f->st, h1, T0 + 500, &err), err);
    MUST(store_session_touch(f->st, h1, T0 + 400, &err), err);   /* older */
    MUST(store_session_set_mfa(f->st, h1, &err), err);
    MUST(store_session_get(f->st, h1, &x, &err), err);
    assert_int_equal(x.last_seen_at, T0 + 500);
    assert_int_equal(x.mfa, 1);
    store_session_clear(&x);
    /* lists: live and not past their end, newest first */
    struct store_session *l;
    size_t n;
    MUST(store_session_list(f->st, a, T0 + 100, &l, &n, &err), err);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].id_hash, h2);
    assert_string_equal(l[1].id_hash, h1);
    store_sessions_free(l, n);
    MUST(store_session_list(f->st, 0, T0 + 40, &l, &n, &err), err);
    assert_int_equal(n, 4);
    assert_string_equal(l[0].id_hash, h4);
    store_sessions_free(l, n);
    /* revoke: of that user only; once */
    assert_int_equal(store_session_revoke(f->st, h3, a, T0 + 600, &err), 1);
    assert_int_equal(store_session_revoke(f->st, h3, b, T0 + 600, &err), 0);
    assert_int_equal(store_session_revoke(f->st, h3, 0, T0 + 600, &err), 1);
    assert_int_equal(store_session_set_mfa(f->st, h3, &err), 1);
    int count = -1;
    MUST(store_session_revoke_user(f->st, a, h1, T0 + 700, &count, &err), err);
    assert_int_equal(count, 2);
    MUST(store_session_revoke_user(f->st, a, NULL, T0 + 800, &count, &err),
         err);
    assert_int_equal(count, 1);
    MUST(store_session_get(f->st, h2, &x, &err), err);
    assert_int_equal(x.revoked_at, T0 + 700);
    store_session_clear(&x);
    MUST(store_session_list(f->st, 0, T0, &l, &n, &err), err);
    assert_int_equal(n, 0);
    store_sessions_free(l, n);
    /* purge: revoked before T0 + 750 (h2, h3, h4) */
    MUST(store_session_delete_expired(f->st, T0, T0 - 1, T0 + 750, &count,
                                      &err), err);
    assert_int_equal(count, 3);
    MUST(store_session_get(f->st, h1, &x, &err), err);
    store_session_clear(&x);
    assert_int_equal(store_session_get(f->st, h2, &x, &err), 1);
}

static void test_r04_store_tokens(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    int64_t a = store_user_new(f->st, "alice", "admin");
    struct store_token t1 = { .name = "ci", .role = "operator",
                              .created_by = "cli", .created_at = T0,
                              .expires_at = T0 + 1000, .owner_id = a };
    struct store_token t2 = { .name = "old", .role = "viewer",
                              .created_at = T0 - 5 };
    snprintf(t1.id, sizeof(t1.id), "01900000-0000-7000-8000-000000000001");
    snprintf(t2.id, sizeof(t2.id), "01900000-0000-7000-8000-000000000002");
    char h1[STORE_HASH_HEX + 1], h2[STORE_HASH_HEX + 1];
    hex64(h1, 'c');
    hex64(h2, 'd');
    MUST(store_token_create(f->st, &t1, h1, &err), err);
    MUST(store_token_create(f->st, &t2, h2, &err), err);
    assert_int_equal(store_token_create(f->st, &t1, h1, &err), -1);
    struct store_token t;
    MUST(store_token_get_by_hash(f->st, h1, &t, &err), err);
    assert_string_equal(t.id, t1.id);
    assert_string_equal(t.role, "operator");
    assert_string_equal(t.created_by, "cli");
    assert_int_equal(t.expires_at, T0 + 1000);
    assert_int_equal(t.owner_id, a);
    assert_string_equal(t.owner, "alice");
    assert_int_equal(t.last_used_at, 0);
    store_token_clear(&t);
    MUST(store_token_get(f->st, t2.id, &t, &err), err);
    assert_null(t.created_by);
    assert_int_equal(t.expires_at, 0);
    assert_int_equal(t.owner_id, 0);
    assert_null(t.owner);
    store_token_clear(&t);
    char h9[STORE_HASH_HEX + 1];
    hex64(h9, '9');
    assert_int_equal(store_token_get_by_hash(f->st, h9, &t, &err), 1);
    assert_int_equal(store_token_get(f->st, "nope", &t, &err), 1);
    MUST(store_token_touch(f->st, t1.id, T0 + 7, &err), err);
    assert_int_equal(store_token_revoke(f->st, t2.id, T0 + 8, &err), 0);
    assert_int_equal(store_token_revoke(f->st, t2.id, T0 + 9, &err), 1);
    assert_int_equal(store_token_revoke(f->st, "nope", T0 + 9, &err), 1);
    struct store_token *l;
    size_t n;
    MUST(store_token_list(f->st, &l, &n, &err), err);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].id, t1.id);
    assert_int_equal(l[0].last_used_at, T0 + 7);
    assert_string_equal(l[1].id, t2.id);
    assert_int_equal(l[1].revoked_at, T0 + 8);
    store_tokens_free(l, n);
}

/* store_throttle_update callbacks: one more failure; forget the row. */
static int thr_one(struct store_throttle *t, void *arg)
{
    int64_t now = *(const int64_t *)arg;
    if (t->failures++ == 0)
        t->first_at = now;
    if (t->failures >= 3) {
        t->level++;
        t->locked_until = now + 60000;
    }
    t->updated_at = now;
    return 0;
}

static int thr_forget(struct store_throttle *t, void *arg)
{
    (void)t;
    (void)arg;
    return 1;
}

static void test_r22_store_throttle_rows(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store_throttle t;
    assert_int_equal(store_throttle_get(f->st, "alice", &t, &err), 1);
    assert_int_equal(t.failures, 0);
    for (int64_t i = 0; i < 3; i++) {
        int64_t now = T0 + i;
        MUST(store_throttle_update(f->st, "alice", thr_one, &now, now, 0,
                                   &err), err);
    }
    MUST(store_throttle_get(f->st, "alice", &t, &err), err);
    assert_int_equal(t.failures, 3);
    assert_int_equal(t.first_at, T0);
    assert_int_equal(t.level, 1);
    assert_int_equal(t.locked_until, T0 + 2 + 60000);
    assert_int_equal(t.updated_at, T0 + 2);
    int64_t now = T0;
    MUST(store_throttle_update(f->st, "bob", thr_one, &now, now, 0, &err),
         err);
    MUST(store_throttle_update(f->st, "bob", thr_forget, NULL, now, 0, &err),
         err);
    assert_int_equal(store_throttle_get(f->st, "bob", &t, &err), 1);
    MUST(store_throttle_update(f->st, "bob", thr_one, &now, now, 0, &err),
         err);
    /* a later update prunes rows not updated since prune_before and not
     * locked at now: bob goes, alice (locked) stays */
    now = T0 + 1000;
    MUST(store_throttle_update(f->st, "carol", thr_one, &now, now, T0 + 500,
                               &err), err);
    assert_int_equal(store_throttle_get(f->st, "bob", &t, &err), 1);
    MUST(store_throttle_get(f->st, "alice", &t, &err), err);
    MUST(store_throttle_clear(f->st, "alice", &err), err);
    assert_int_equal(store_throttle_get(f->st, "alice", &t, &err), 1);
}

/* ---- R21: two nodes (two connections) on one database ----------------------------- */

/* One session, two nodes: what one node creates, touches or revokes, the
 * other sees at once. */
static void test_r21_session_shared_by_two_nodes(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct store *node2 = store_open(f->db, &err);
    if (node2 == NULL)
        fail_msg("node 2: %s", err.msg);
    int64_t a = store_user_new(f->st, "alice", "admin");
    char h[STORE_HASH_HEX + 1];
    hex64(h, 'e');
    session_make(f->st, 'e', a, T0, T0 + 100000);
    struct store_session x;
    MUST(store_session_get(node2, h, &x, &err), err);
    assert_int_equal(x.user_id, a);
    assert_int_equal(x.revoked_at, 0);
    store_session_clear(&x);
    MUST(store_session_touch(node2, h, T0 + 10, &err), err);
    MUST(store_session_set_mfa(node2, h, &err), err);
    MUST(store_session_get(f->st, h, &x, &err), err);
    assert_int_equal(x.last_seen_at, T0 + 10);
    assert_int_equal(x.mfa, 1);
    store_session_clear(&x);
    /* node 1 revokes (a logout); node 2 refuses it from then on */
    assert_int_equal(store_session_revoke(f->st, h, a, T0 + 20, &err), 0);
    MUST(store_session_get(node2, h, &x, &err), err);
    assert_int_equal(x.revoked_at, T0 + 20);
    store_session_clear(&x);
    assert_int_equal(store_session_revoke(node2, h, a, T0 + 30, &err), 1);
    assert_int_equal(store_session_set_mfa(node2, h, &err), 1);
    struct store_session *l;
    size_t n;
    MUST(store_session_list(node2, a, T0 + 40, &l, &n, &err), err);
    assert_int_equal(n, 0);
    store_sessions_free(l, n);
    store_close(node2);
}

/* THREADS nodes, each on its own connection, do the same thing in each of
 * ROUNDS rounds, all at once (a barrier before each round); wins[round]
 * counts the calls that returned 0. */
enum { RACE_THREADS = 4, RACE_ROUNDS = 60 };

struct race {
    const char *db;
    int (*op)(struct store *st, int round, int node, void *arg,
              struct error *err);
    void *arg;
    pthread_barrier_t bar;
    int wins[RACE_ROUNDS];
    char err[256];
    pthread_mutex_t mu;
};

struct race_seat {
    struct race *r;
    int node;
};

static void *race_node(void *p)
{
    struct race_seat *seat = p;
    struct race *r = seat->r;
    struct error err = {0};
    struct store *st = store_open(r->db, &err);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        pthread_barrier_wait(&r->bar);
        int rc = st ? r->op(st, i, seat->node, r->arg, &err) : -1;
        pthread_mutex_lock(&r->mu);
        if (rc == 0)
            r->wins[i]++;
        else if (rc < 0 && r->err[0] == '\0')
            snprintf(r->err, sizeof(r->err), "round %d: %s", i, err.msg);
        pthread_mutex_unlock(&r->mu);
    }
    pthread_barrier_wait(&r->bar);      /* every node alive to the end */
    store_close(st);
    return NULL;
}

static void race_run(struct race *r)
{
    pthread_t th[RACE_THREADS];
    struct race_seat seat[RACE_THREADS];
    pthread_barrier_init(&r->bar, NULL, RACE_THREADS);
    pthread_mutex_init(&r->mu, NULL);
    for (int i = 0; i < RACE_THREADS; i++) {
        seat[i] = (struct race_seat){ r, i };
        assert_int_equal(pthread_create(&th[i], NULL, race_node, &seat[i]),
                         0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r->bar);
    pthread_mutex_destroy(&r->mu);
    if (r->err[0])
        fail_msg("%s", r->err);
}

/* Every round won by exactly one node. */
static void race_once_each(const struct race *r, const char *what)
{
    for (int i = 0; i < RACE_ROUNDS; i++)
        if (r->wins[i] != 1)
            fail_msg("%s of round %d accepted %d times", what, i,
                     r->wins[i]);
}

static int op_totp_step(struct store *st, int round, int node, void *arg,
                        struct error *err)
{
    (void)node;
    return store_user_totp_step(st, *(const int64_t *)arg, 100 + round, err);
}

/* One TOTP code sent to several nodes at the same moment: its step is
 * accepted by one of them, refused by the others. */
static void test_r21_totp_step_accepted_once_across_nodes(void **state)
{
    struct fx *f = *state;
    int64_t id = store_user_new(f->st, "alice", "admin");
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.db = f->db;
    r.op = op_totp_step;
    r.arg = &id;
    race_run(&r);
    race_once_each(&r, "TOTP step");
    struct store_user u;
    struct error err = {0};
    MUST(store_user_get_by_id(f->st, id, &u, &err), err);
    assert_int_equal(u.totp_last_step, 100 + RACE_ROUNDS - 1);
    store_user_clear(&u);
}

struct rc_arg {
    int64_t user;
    char codes[RACE_ROUNDS][16];
};

static int op_recovery(struct store *st, int round, int node, void *arg,
                       struct error *err)
{
    (void)node;
    struct rc_arg *a = arg;
    return store_recovery_consume(st, a->user, a->codes[round], T0, err);
}

/* One recovery code used on several nodes at the same moment: one login
 * gets it. */
static void test_r21_recovery_code_used_once_across_nodes(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    static struct rc_arg a;
    a.user = store_user_new(f->st, "alice", "admin");
    const char *codes[RACE_ROUNDS];
    for (int i = 0; i < RACE_ROUNDS; i++) {
        snprintf(a.codes[i], sizeof(a.codes[i]), "code-%d", i);
        codes[i] = a.codes[i];
    }
    MUST(store_recovery_replace(f->st, a.user, codes, RACE_ROUNDS, T0, &err),
         err);
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.db = f->db;
    r.op = op_recovery;
    r.arg = &a;
    race_run(&r);
    race_once_each(&r, "recovery code");
    assert_int_equal(store_recovery_left(f->st, a.user, &err), 0);
}

static int op_recovery_replace(struct store *st, int round, int node,
                               void *arg, struct error *err)
{
    const int64_t *users = arg;
    char buf[10][32];
    const char *codes[10];
    for (int k = 0; k < 10; k++) {
        snprintf(buf[k], sizeof(buf[k]), "u%d-n%d-c%d", round, node, k);
        codes[k] = buf[k];
    }
    return store_recovery_replace(st, users[round], codes, 10, T0, err);
}

/* A user's recovery codes made again on two nodes at once (two browser
 * tabs): the user keeps one set of 10, not both. */
static void test_r21_recovery_codes_replaced_once_across_nodes(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    static int64_t users[RACE_ROUNDS];
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "user%d", i);
        users[i] = store_user_new(f->st, name, "viewer");
    }
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.db = f->db;
    r.op = op_recovery_replace;
    r.arg = users;
    race_run(&r);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        int64_t left = store_recovery_left(f->st, users[i], &err);
        if (left != 10)
            fail_msg("user%d has %lld codes after concurrent replacements",
                     i, (long long)left);
    }
}

/* arg: NULL, every connection in one run (one process); else each node in
 * a run of its own. */
static int op_replay(struct store *st, int round, int node, void *arg,
                     struct error *err)
{
    char sig[16], run[16];
    snprintf(sig, sizeof(sig), "sig-%d", round);
    snprintf(run, sizeof(run), "run-%d", arg ? node : 0);
    return store_replay_claim(st, "hook", sig, T0 + 300000, run, T0, err);
}

/* One signed webhook request replayed to several connections of a node at
 * the same moment: one claims it. */
static void test_r21_replay_signature_claimed_once(void **state)
{
    struct fx *f = *state;
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.db = f->db;
    r.op = op_replay;
    race_run(&r);
    race_once_each(&r, "signature");
}

/* The same request replayed to several live nodes (each its own process
 * run) at the same moment: one claims it; another run's pending claim is
 * taken over only when that process is gone (test_m6_replay_guard_claims).
 * PostgreSQL only: on SQLite another run is an earlier process of the one
 * node. */
static void test_r21_pg_replay_signature_claimed_once_by_nodes(void **state)
{
    struct fx *f = *state;
    static struct race r;
    static int each_own_run = 1;
    memset(&r, 0, sizeof(r));
    r.db = f->db;
    r.op = op_replay;
    r.arg = &each_own_run;
    race_run(&r);
    race_once_each(&r, "signature");
}

struct thr_arg {
    char account[RACE_ROUNDS][16];
};

static int op_throttle(struct store *st, int round, int node, void *arg,
                       struct error *err)
{
    (void)node;
    struct thr_arg *a = arg;
    int64_t now = T0 + round;
    /* a fresh account each round (no row yet), then a shared one */
    if (store_throttle_update(st, a->account[round], thr_one, &now, now,
                              T0 - 1, err) < 0)
        return -1;
    return store_throttle_update(st, "shared", thr_one, &now, now, T0 - 1,
                                 err);
}

/* Failed logins of one account on several nodes at the same moment: every
 * one is counted (none lost to another node's write), also the first ones,
 * when the account has no row yet. */
static void test_r21_throttle_failures_from_nodes_add_up(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    static struct thr_arg a;
    for (int i = 0; i < RACE_ROUNDS; i++)
        snprintf(a.account[i], sizeof(a.account[i]), "user%d", i);
    static struct race r;
    memset(&r, 0, sizeof(r));
    r.db = f->db;
    r.op = op_throttle;
    r.arg = &a;
    race_run(&r);
    struct store_throttle t;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        MUST(store_throttle_get(f->st, a.account[i], &t, &err), err);
        if (t.failures != RACE_THREADS)
            fail_msg("%s: %d failures counted of %d", a.account[i],
                     t.failures, RACE_THREADS);
    }
    MUST(store_throttle_get(f->st, "shared", &t, &err), err);
    assert_int_equal(t.failures, RACE_THREADS * RACE_ROUNDS);
}

/* ---- R21 with R14: the last administrator, cluster-wide ---------------------------- */

struct demote {
    const char *db;
    int64_t id;
    pthread_barrier_t *bar;
    int rc;
    char err[256];
};

static void *demote_node(void *p)
{
    struct demote *d = p;
    struct error err = {0};
    struct store *st = store_open(d->db, &err);
    pthread_barrier_wait(d->bar);
    d->rc = st ? store_user_set_role(st, d->id, "viewer", T0, &err) : -1;
    snprintf(d->err, sizeof(d->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Two nodes demote the last two enabled administrators at the same
 * moment: one change is refused (2), one administrator is left. The check
 * and the write are one transaction that takes turns with every other
 * such change: without it, both nodes counted two admins and went on. */
static void test_r21_two_nodes_never_demote_the_last_admin(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    int64_t survivor = 0;
    for (int round = 0; round < 20; round++) {
        char n1[32], n2[32];
        snprintf(n1, sizeof(n1), "ada%d", round);
        snprintf(n2, sizeof(n2), "bea%d", round);
        int64_t a = store_user_new(f->st, n1, "admin");
        int64_t b = store_user_new(f->st, n2, "admin");
        if (survivor)           /* the last round's: two admins are left */
            assert_int_equal(store_user_set_role(f->st, survivor, "viewer",
                                                 T0, &err), 0);
        assert_int_equal(store_user_count_role(f->st, "admin", &err), 2);
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, 2);
        struct demote d[2] = { { .db = f->db, .id = a, .bar = &bar },
                               { .db = f->db, .id = b, .bar = &bar } };
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, demote_node,
                                            &d[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&bar);
        for (int i = 0; i < 2; i++)
            if (d[i].rc < 0)
                fail_msg("round %d: %s", round, d[i].err);
        if (!((d[0].rc == 0 && d[1].rc == 2) || (d[0].rc == 2 && d[1].rc == 0)))
            fail_msg("round %d: the demotions returned %d and %d", round,
                     d[0].rc, d[1].rc);
        assert_int_equal(store_user_count_role(f->st, "admin", &err), 1);
        survivor = d[0].rc == 2 ? a : b;
    }
    /* a disabled or deleted last admin is refused the same way */
    assert_int_equal(store_user_set_disabled(f->st, survivor, 1, T0, &err), 2);
    assert_int_equal(store_user_delete(f->st, survivor, T0, NULL, &err), 2);
    assert_int_equal(store_user_count_role(f->st, "admin", &err), 1);
    /* changes of other users are not refused, with or without admins */
    int64_t v = store_user_new(f->st, "vic", "viewer");
    assert_int_equal(store_user_set_role(f->st, v, "operator", T0, &err), 0);
    assert_int_equal(store_user_delete(f->st, v, T0, NULL, &err), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    /* both backends */
#define BOTH \
        T(test_r16_password_policy_length), \
        T(test_r16_password_policy_user_name), \
        T(test_r16_password_policy_common_list), \
        T(test_r16_password_policy_patterns), \
        T(test_r16_one_time_password), \
        T(test_r14_permission_table_admin), \
        T(test_r14_permission_table_operator), \
        T(test_r14_permission_table_auditor), \
        T(test_r14_permission_table_viewer), \
        T(test_r14_permission_table_deny_by_default), \
        T(test_r14_role_and_perm_names), \
        T(test_r14_role_covers), \
        T(test_r14_role_meet), \
        T(test_r13_totp_rfc6238_vectors), \
        T(test_r13_mfa_required_setting), \
        T(test_m6_replay_guard_claims), \
        T(test_r13_store_users), \
        T(test_r13_store_recovery_codes), \
        T(test_r13_store_sessions), \
        T(test_r04_store_tokens), \
        T(test_r22_store_throttle_rows), \
        T(test_r21_session_shared_by_two_nodes), \
        T(test_r21_totp_step_accepted_once_across_nodes), \
        T(test_r21_recovery_code_used_once_across_nodes), \
        T(test_r21_recovery_codes_replaced_once_across_nodes), \
        T(test_r21_replay_signature_claimed_once), \
        T(test_r21_throttle_failures_from_nodes_add_up), \
        T(test_r21_two_nodes_never_demote_the_last_admin), \
        T(test_r16_argon2id_params_in_hash), \
        T(test_r16_authenticate_generic_failure), \
        T(test_r16_user_create_rules), \
        T(test_r16_password_change), \
        T(test_r14_last_admin_protected), \
        T(test_r13_totp_enrolment), \
        T(test_r13_totp_reuse_refused), \
        T(test_r13_recovery_code_single_use), \
        T(test_r13_login_with_totp), \
        T(test_r13_session_idle_and_absolute_timeout), \
        T(test_r13_session_csrf_and_revoke), \
        T(test_r04_token_revoked_refused), \
        T(test_r04_token_expired_refused), \
        T(test_r14_token_acts_as_owner), \
        T(test_r04_auth_forms_restricted), \
        T(test_r22_login_throttle_per_account), \
        T(test_r22_password_checks_bounded), \
        T(test_r06_no_secret_in_audit_or_log)
    const struct CMUnitTest sqlite[] = {
        BOTH,
        /* makes a legacy token row with the sqlite3 CLI's own SQL */
        T(test_r14_token_without_owner_refused),
    };
    const struct CMUnitTest postgresql[] = {
        BOTH,
        T(test_r21_pg_replay_signature_claimed_once_by_nodes),
    };
#undef BOTH
#undef T
    int failed = cmocka_run_group_tests_name("auth (sqlite)", sqlite, NULL,
                                             NULL);
    g_pg = 1;
    failed += cmocka_run_group_tests_name("auth (postgresql)", postgresql,
                                          NULL, NULL);
    return failed;
}
