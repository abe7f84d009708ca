/*
 * test_audit.c - unit tests of the tamper-evident audit trail (R18): a
 * chain of entries verifies; each kind of tampering (an edited field, a
 * deleted entry, an inserted entry, reordered entries, a chain recomputed
 * with valid hashes, a corrupted checkpoint signature, another keystore's
 * key) is reported at the right entry with the right problem.
 *
 * Tampering goes straight to the database file with sqlite3 (tests may use
 * SQL; the product may not outside src/store/). The entry hash is
 * recomputed here independently from the encoding documented at the top
 * of src/audit/audit.c, so a forged chain is a real forgery. The signed
 * head anchor (DIR/audit.head, src/audit/anchor.c) catches the newest
 * entries deleted or rewritten, is never moved away from evidence, may lag
 * but never lead, and leaves the documented window (an older anchor put
 * back). Each test owns a temp dir with a keystore and a database.
 *
 * The trail's tests run against SQLite and against a real PostgreSQL
 * server (R21; scripts/run-unit.sh starts one and names it in
 * WHARF_TEST_PG): tampering then goes through a libpq connection of its
 * own. The signed head anchor's tests run on both too: on PostgreSQL the
 * anchor is the node's, in its data dir (audit_set_node_dir: the fixture's
 * temp dir is the node's), and test_r21_each_node_anchors_the_shared_trail
 * has two nodes with an anchor each. SQLite only: the older data dir's
 * anchor (DIR/audit.head before state/) and the edit that writes a NUL
 * byte into a text column (PostgreSQL text cannot hold one).
 * test_r21_nodes_appending_together_keep_one_chain runs against both:
 * three connections appending at once leave one chain.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "audit/audit.h"
#include "store/audit_store.h"
#include "store/store.h"
#include "vault/vault.h"

struct fx {
    char dir[256];
    char ks[320];
    char db[320];               /* a file, or a postgresql:// URL */
    char pgname[64];            /* the PostgreSQL database, "" on SQLite */
    struct vault *v;
    struct store *st;
    sqlite3 *raw;               /* a second connection, for tampering */
    PGconn *pg;                 /* the same on PostgreSQL */
};

/* The group running: 0 SQLite, 1 PostgreSQL (WHARF_TEST_PG). */
static int g_pg;

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->ks, sizeof(f->ks), "%s/keystore", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/wharf.db", f->dir);
    if (g_pg)
        test_pg_fresh(f->db, sizeof(f->db), f->pgname);
    struct error err = {0};
    if (vault_create(f->ks, &err) != 0 ||
        (f->v = vault_open(f->ks, &err)) == NULL ||
        (f->st = store_open(f->db, &err)) == NULL)
        fail_msg("setup: %s", err.msg);
    if (g_pg) {
        audit_set_node_dir(f->db, f->dir);  /* this test's node */
        f->pg = PQconnectdb(f->db);
        if (PQstatus(f->pg) != CONNECTION_OK)
            fail_msg("connect: %s", PQerrorMessage(f->pg));
    } else {
        assert_int_equal(sqlite3_open(f->db, &f->raw), SQLITE_OK);
        sqlite3_busy_timeout(f->raw, 5000);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sqlite3_close(f->raw);
    PQfinish(f->pg);
    store_close(f->st);
    vault_close(f->v);
    audit_set_node_dir(NULL, NULL);
    if (f->pgname[0])
        test_pg_drop(f->pgname);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

/* Entry i of a test trail: varied fields, some NULL. */
static void append_one(struct fx *f, struct vault *v, int i)
{
    char actor[32], target[32], detail[64];
    snprintf(actor, sizeof(actor), "user:u%d", i % 7);
    snprintf(target, sizeof(target), "flow-%d", i);
    snprintf(detail, sizeof(detail), "before=%08x after=%08x", i, i * 31);
    struct audit_event e = {
        .actor = actor, .address = i % 2 ? "192.0.2.7" : NULL,
        .action = i % 3 ? "flow.import" : "login.success",
        .target = i % 5 ? target : NULL, .detail = i % 4 ? detail : NULL,
    };
    struct error err = {0};
    if (audit_append(f->st, v, &e, &err) != 0)
        fail_msg("audit_append %d: %s", i, err.msg);
}

static void append_n(struct fx *f, int n)
{
    for (int i = 1; i <= n; i++)
        append_one(f, f->v, i);
}

/* Run q (one or more statements) on the tampering connection. */
static void sql(struct fx *f, const char *q)
{
    if (f->pg) {
        PGresult *r = PQexec(f->pg, q);
        if (PQresultStatus(r) != PGRES_COMMAND_OK &&
            PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("%s: %s", q, PQerrorMessage(f->pg));
        PQclear(r);
        return;
    }
    char *msg = NULL;
    if (sqlite3_exec(f->raw, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg ? msg : "?");
}

/* Run one statement q with text parameters $1..$n (written in that order
 * in q, so SQLite numbers them alike) on the tampering connection. */
static void sqlp(struct fx *f, const char *q, int n, const char *const *v)
{
    if (f->pg) {
        PGresult *r = PQexecParams(f->pg, q, n, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("%s: %s", q, PQerrorMessage(f->pg));
        PQclear(r);
        return;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(f->raw, q, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(f->raw));
    assert_int_equal(sqlite3_bind_parameter_count(st), n);
    for (int i = 0; i < n; i++)
        sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE)
        fail_msg("%s: %s", q, sqlite3_errmsg(f->raw));
    sqlite3_finalize(st);
}

/* Verify and expect rc; when broken, the first bad seq and a problem
 * containing want. Returns the report. */
static struct audit_report verify_expect(struct fx *f, struct vault *v,
                                         int rc, int64_t first_bad,
                                         const char *want)
{
    struct audit_report r;
    struct error err = {0};
    int got = audit_verify(f->st, v, &r, &err);
    if (got != rc)
        fail_msg("audit_verify returned %d (want %d): %s / %s", got, rc,
                 r.problem, err.msg);
    if (rc == 0) {
        assert_int_equal(r.first_bad, 0);
        assert_string_equal(r.problem, "");
    }
    if (rc == 1 && r.first_bad != first_bad)
        fail_msg("first bad %" PRId64 " (want %" PRId64 "): %s", r.first_bad,
                 first_bad, r.problem);
    if (want != NULL && strstr(r.problem, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, r.problem);
    return r;
}

static void put_be(EVP_MD_CTX *md, uint64_t v, int n)
{
    unsigned char b[8];
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    assert_int_equal(EVP_DigestUpdate(md, b, (size_t)n), 1);
}

static void put_field(EVP_MD_CTX *md, const unsigned char *s)
{
    unsigned char tag = s != NULL;
    assert_int_equal(EVP_DigestUpdate(md, &tag, 1), 1);
    if (s == NULL)
        return;
    put_be(md, strlen((const char *)s), 4);
    assert_int_equal(EVP_DigestUpdate(md, s, strlen((const char *)s)), 1);
}

/* The documented entry hash of row r (seq, at, actor, address, action,
 * target, detail) with prev as prev_hash. */
static void doc_hash(const struct store_audit_row *r, const char *prev,
                     char out[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[32];
    unsigned int n = 0;
    assert_int_equal(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
    const char *dom = "wharf-audit-entry v1\n";
    assert_int_equal(EVP_DigestUpdate(md, dom, strlen(dom)), 1);
    put_be(md, (uint64_t)r->seq, 8);
    put_be(md, (uint64_t)r->at, 8);
    const char *fields[] = { r->actor, r->address, r->action, r->target,
                             r->detail };
    for (int c = 0; c < 5; c++)
        put_field(md, (const unsigned char *)fields[c]);
    put_field(md, (const unsigned char *)prev);
    assert_int_equal(EVP_DigestFinal_ex(md, d, &n), 1);
    EVP_MD_CTX_free(md);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Stored hash of entry seq into out. */
static void stored_hash(struct fx *f, int64_t seq, char out[65])
{
    struct error err = {0};
    assert_int_equal(store_audit_hash_at(f->st, seq, out, &err), 1);
}

/* Recompute prev_hash and hash of every entry from seq `from` on, with the
 * documented encoding: a forger's valid chain. */
static void rechain_from(struct fx *f, int64_t from)
{
    char prev[65], h[65], seq[24];
    struct store_audit_row *rows;
    size_t n;
    struct error err = {0};
    stored_hash(f, from - 1, prev);
    assert_int_equal(store_audit_list(f->st, from - 1, 10000, &rows, &n,
                                      &err), 0);
    for (size_t i = 0; i < n && rows[i].seq == from + (int64_t)i; i++) {
        doc_hash(&rows[i], prev, h);
        snprintf(seq, sizeof(seq), "%" PRId64, rows[i].seq);
        const char *v[] = { prev, h, seq };
        sqlp(f, "UPDATE audit SET prev_hash = $1, hash = $2 WHERE seq = $3",
             3, v);
        memcpy(prev, h, sizeof(prev));
    }
    store_audit_rows_free(rows, n);
}

static int64_t count(struct fx *f, const char *q)
{
    if (f->pg) {
        PGresult *r = PQexec(f->pg, q);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
            fail_msg("%s: %s", q, PQerrorMessage(f->pg));
        int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return v;
    }
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->raw, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ---- an intact trail --------------------------------------------------- */

static void test_r18_empty_trail_verifies(void **state)
{
    struct fx *f = *state;
    struct audit_report r = verify_expect(f, f->v, 0, 0, NULL);
    assert_int_equal(r.entries, 0);
    assert_int_equal(r.checkpoints, 0);
    struct error err = {0};
    assert_int_equal(audit_checkpoint(f->st, f->v, &err), 0);  /* no-op */
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit_checkpoints"), 0);
}

static void test_r18_chain_of_200_verifies(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    struct audit_report r = verify_expect(f, f->v, 0, 0, NULL);
    assert_int_equal(r.entries, 200);
    assert_int_equal(r.checkpoints, 3);            /* at 64, 128, 192 */
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit_checkpoints WHERE"
                              " seq IN (64, 128, 192)"), 3);
    struct error err = {0};
    assert_int_equal(audit_checkpoint(f->st, f->v, &err), 0);
    assert_int_equal(audit_checkpoint(f->st, f->v, &err), 0);
    r = verify_expect(f, f->v, 0, 0, NULL);
    assert_int_equal(r.checkpoints, 4);            /* + the head, once */
    /* the rows as the store lists them: numbered, linked, in order */
    struct store_audit_row *rows;
    size_t n;
    assert_int_equal(store_audit_list(f->st, 0, 1000, &rows, &n, &err), 0);
    assert_int_equal(n, 200);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rows[i].seq, (int64_t)i + 1);
        assert_int_equal(strlen(rows[i].hash), 64);
        if (i == 0)
            assert_string_equal(rows[i].prev_hash, "0000000000000000000000"
                                "000000000000000000000000000000000000000000");
        else
            assert_string_equal(rows[i].prev_hash, rows[i - 1].hash);
    }
    assert_string_equal(rows[1].actor, "user:u2");
    assert_null(rows[1].address);
    assert_string_equal(rows[0].address, "192.0.2.7");
    store_audit_rows_free(rows, n);
    /* paging: after 150, 20 at a time */
    assert_int_equal(store_audit_list(f->st, 150, 20, &rows, &n, &err), 0);
    assert_int_equal(n, 20);
    assert_int_equal(rows[0].seq, 151);
    store_audit_rows_free(rows, n);
}

static void test_r18_entry_hash_matches_documented_encoding(void **state)
{
    struct fx *f = *state;
    append_n(f, 30);
    struct store_audit_row *rows;
    size_t n;
    struct error err = {0};
    assert_int_equal(store_audit_list(f->st, 0, 100, &rows, &n, &err), 0);
    char h[65];
    for (size_t i = 0; i < n; i++) {
        doc_hash(&rows[i], rows[i].prev_hash, h);
        assert_string_equal(h, rows[i].hash);
    }
    store_audit_rows_free(rows, n);
    assert_int_equal(n, 30);
}

static void test_r18_checkpoint_every_64_and_on_demand(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    append_n(f, 63);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit_checkpoints"), 0);
    append_one(f, f->v, 64);
    struct store_audit_checkpoint *cps;
    size_t n;
    assert_int_equal(store_audit_checkpoints(f->st, 0, 10, &cps, &n, &err),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(cps[0].seq, 64);
    char h64[65], text[200];
    stored_hash(f, 64, h64);
    assert_string_equal(cps[0].hash, h64);
    assert_int_equal(strlen(cps[0].signature), 128);
    /* the signature is over the documented text, by the vault's key */
    unsigned char sig[VAULT_SIG_LEN];
    for (int i = 0; i < VAULT_SIG_LEN; i++) {
        unsigned b;
        assert_int_equal(sscanf(cps[0].signature + 2 * i, "%2x", &b), 1);
        sig[i] = (unsigned char)b;
    }
    snprintf(text, sizeof(text), "wharf-audit-checkpoint v1\n64\n%s\n", h64);
    assert_int_equal(vault_audit_verify(f->v, cps[0].key_id, text,
                                        strlen(text), sig, &err), 0);
    text[strlen("wharf-audit-checkpoint v1\n")] = '5';     /* "54" */
    assert_int_equal(vault_audit_verify(f->v, cps[0].key_id, text,
                                        strlen(text), sig, &err), -1);
    store_audit_checkpoints_free(cps, n);
    append_n(f, 6);                 /* 70 entries */
    assert_int_equal(audit_checkpoint(f->st, f->v, &err), 0);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit_checkpoints"), 2);
    assert_int_equal(count(f, "SELECT seq FROM audit_checkpoints ORDER BY"
                              " seq DESC LIMIT 1"), 70);
    assert_int_equal(audit_checkpoint(f->st, f->v, &err), 0);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit_checkpoints"), 2);
    verify_expect(f, f->v, 0, 0, NULL);
}

static void test_r18_verify_crosses_pages(void **state)
{
    struct fx *f = *state;
    append_n(f, 600);
    struct audit_report r = verify_expect(f, f->v, 0, 0, NULL);
    assert_int_equal(r.entries, 600);
    assert_int_equal(r.checkpoints, 9);
    sql(f, "UPDATE audit SET action = 'logout' WHERE seq = 555");
    r = verify_expect(f, f->v, 1, 555, "entry 555: hash does not match its "
                      "contents (edited?)");
    assert_int_equal(r.entries, 554);
}

static void test_r18_append_validates_event(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct audit_event bad[] = {
        { NULL, NULL, "flow.import", NULL, NULL },
        { "cli", NULL, "", NULL, NULL },
        { "cli", NULL, "flow.import", NULL, big },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        assert_int_equal(audit_append(f->st, f->v, &bad[i], &err), -1);
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(audit_append(f->st, f->v, NULL, &err), -1);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit"), 0);
}

static void test_r18_keystore_without_audit_key_rolls_back(void **state)
{
    struct fx *f = *state;
    char path[400];
    snprintf(path, sizeof(path), "%s/old-keystore", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("wharf-keystore 1\nmaster 0123456789abcdef 00112233445566778899"
          "aabbccddeeff00112233445566778899aabbccddeeff active\n", fp);
    fclose(fp);
    assert_int_equal(chmod(path, 0600), 0);
    struct error err = {0};
    struct vault *old = vault_open(path, &err);
    assert_non_null(old);
    for (int i = 1; i <= 63; i++)
        append_one(f, old, i);
    struct audit_event e = { "cli", NULL, "flow.export", NULL, NULL };
    assert_int_equal(audit_append(f->st, old, &e, &err), -1);
    assert_non_null(strstr(err.msg, "keystore has no audit signing key"));
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit"), 63);
    assert_int_equal(audit_checkpoint(f->st, old, &err), -1);
    assert_non_null(strstr(err.msg, "keystore has no audit signing key"));
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit_checkpoints"), 0);
    vault_close(old);
}

/* ---- tampering ---------------------------------------------------------- */

static void test_r18_edited_field_detected(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    static const struct { const char *edit, *undo; } cases[] = {
        { "UPDATE audit SET actor = actor || 'x' WHERE seq = 17",
          "UPDATE audit SET actor = substr(actor, 1, length(actor) - 1)"
          " WHERE seq = 17" },
        { "UPDATE audit SET at = at + 1 WHERE seq = 17",
          "UPDATE audit SET at = at - 1 WHERE seq = 17" },
        { "UPDATE audit SET address = '' WHERE seq = 18",
          "UPDATE audit SET address = NULL WHERE seq = 18" },
        { "UPDATE audit SET action = 'logout' WHERE seq = 17",
          "UPDATE audit SET action = 'flow.import' WHERE seq = 17" },
        { "UPDATE audit SET target = 'flow-18' WHERE seq = 17",
          "UPDATE audit SET target = 'flow-17' WHERE seq = 17" },
        { "UPDATE audit SET detail = NULL WHERE seq = 17",
          "UPDATE audit SET detail = 'before=00000011 after=0000020f'"
          " WHERE seq = 17" },
        { "UPDATE audit SET detail = 'before' || char(0) || 'x' WHERE seq = 17",
          "UPDATE audit SET detail = 'before=00000011 after=0000020f'"
          " WHERE seq = 17" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (g_pg && strstr(cases[i].edit, "char(0)"))
            continue;       /* PostgreSQL text cannot hold a NUL byte */
        sql(f, cases[i].edit);
        int64_t seq = strstr(cases[i].edit, "seq = 18") ? 18 : 17;
        char want[100];
        snprintf(want, sizeof(want), "entry %" PRId64 ": ", seq);
        verify_expect(f, f->v, 1, seq, want);
        verify_expect(f, f->v, 1, seq, "(edited?)");
        sql(f, cases[i].undo);
        verify_expect(f, f->v, 0, 0, NULL);
    }
    sql(f, "UPDATE audit SET target = 'flow-18' WHERE seq = 17");
    verify_expect(f, f->v, 1, 17,
                  "entry 17: hash does not match its contents (edited?)");
}

static void test_r18_field_boundaries_are_unambiguous(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct audit_event e1 = { "ab", "c", "login.success", NULL, NULL };
    struct audit_event e2 = { "cli", NULL, "flow.export", "", NULL };
    assert_int_equal(audit_append(f->st, f->v, &e1, &err), 0);
    assert_int_equal(audit_append(f->st, f->v, &e2, &err), 0);
    append_n(f, 3);
    verify_expect(f, f->v, 0, 0, NULL);
    sql(f, "UPDATE audit SET actor = 'a', address = 'bc' WHERE seq = 1");
    verify_expect(f, f->v, 1, 1, "entry 1: hash does not match");
    sql(f, "UPDATE audit SET actor = 'ab', address = 'c' WHERE seq = 1");
    sql(f, "UPDATE audit SET target = NULL WHERE seq = 2");
    verify_expect(f, f->v, 1, 2, "entry 2: hash does not match");
    sql(f, "UPDATE audit SET target = '' WHERE seq = 2");
    verify_expect(f, f->v, 0, 0, NULL);
    /* a byte equal to the presence tag moved across the boundary: only
     * the length prefix tells "a\1"+"b" from "a"+"\1b" */
    struct audit_event e3 = { "a\001", "b", "login.failure", NULL, NULL };
    assert_int_equal(audit_append(f->st, f->v, &e3, &err), 0);
    verify_expect(f, f->v, 0, 0, NULL);
    sql(f, g_pg ? "UPDATE audit SET actor = 'a', address = chr(1) || 'b'"
                  " WHERE seq = 6"
                : "UPDATE audit SET actor = 'a', address = char(1) || 'b'"
                  " WHERE seq = 6");
    verify_expect(f, f->v, 1, 6, "entry 6: hash does not match");
}

static void test_r18_deleted_entry_detected(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    sql(f, "DELETE FROM audit WHERE seq = 100");
    verify_expect(f, f->v, 1, 100, "entry 100: missing (entry 99 is followed "
                  "by entry 101; deleted?)");
    /* the same, with the later entries renumbered to close the gap */
    sql(f, "UPDATE audit SET seq = seq - 1 WHERE seq > 100");
    verify_expect(f, f->v, 1, 100, "entry 100: previous-hash link broken "
                  "(deleted, inserted or reordered entry before it?)");
    /* the first entry */
    sql(f, "DELETE FROM audit WHERE seq = 1");
    verify_expect(f, f->v, 1, 1, "entry 1: missing (the trail starts at "
                  "entry 2; deleted?)");
}

static void test_r18_inserted_entry_detected(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    /* make room at 150, insert a forged entry there and recompute every
     * link and hash from it on: the hashes agree again, the signed
     * checkpoint at 192 does not */
    sql(f, "UPDATE audit SET seq = -seq WHERE seq >= 150;"
           "UPDATE audit SET seq = -seq + 1 WHERE seq < 0;"
           "INSERT INTO audit(seq, at, actor, address, action, target, detail,"
           " prev_hash, hash) SELECT 150, at + 1, 'user:mallory', NULL,"
           " 'login.success', NULL, NULL, hash, '' FROM audit WHERE seq = 149");
    rechain_from(f, 150);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit"), 201);
    verify_expect(f, f->v, 1, 192, "checkpoint at 192: the signed hash "
                  "differs from entry 192's hash (entries after the "
                  "checkpoint at 128 rewritten?)");
}

static void test_r18_inserted_entry_breaks_next_link(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    char prev[65], h[65];
    stored_hash(f, 149, prev);
    sql(f, "UPDATE audit SET seq = -seq WHERE seq >= 150;"
           "UPDATE audit SET seq = -seq + 1 WHERE seq < 0;");
    /* a forged entry at 150 linked to 149 with a correct hash */
    const char *pv[] = { prev };
    sqlp(f, "INSERT INTO audit(seq, at, actor, address, action, target,"
         " detail, prev_hash, hash) VALUES(150, 1700000000000,"
         " 'user:mallory', NULL, 'login.success', NULL, NULL, $1, '')",
         1, pv);
    struct store_audit_row *row;
    size_t n;
    struct error err = {0};
    assert_int_equal(store_audit_list(f->st, 149, 1, &row, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(row[0].seq, 150);
    doc_hash(&row[0], prev, h);
    store_audit_rows_free(row, n);
    const char *hv[] = { h };
    sqlp(f, "UPDATE audit SET hash = $1 WHERE seq = 150", 1, hv);
    verify_expect(f, f->v, 1, 151, "entry 151: previous-hash link broken "
                  "(deleted, inserted or reordered entry before it?)");
}

static void test_r18_reordered_entries_detected(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    /* swap the contents of 120 and 121 (seq stays in place) */
    sql(f, "UPDATE audit SET seq = -1 WHERE seq = 120;"
           "UPDATE audit SET seq = 120 WHERE seq = 121;"
           "UPDATE audit SET seq = 121 WHERE seq = -1");
    verify_expect(f, f->v, 1, 120, "entry 120: previous-hash link broken");
    /* swap back, then two entries far apart */
    sql(f, "UPDATE audit SET seq = -1 WHERE seq = 120;"
           "UPDATE audit SET seq = 120 WHERE seq = 121;"
           "UPDATE audit SET seq = 121 WHERE seq = -1");
    verify_expect(f, f->v, 0, 0, NULL);
    sql(f, "UPDATE audit SET seq = -1 WHERE seq = 30;"
           "UPDATE audit SET seq = 30 WHERE seq = 90;"
           "UPDATE audit SET seq = 90 WHERE seq = -1");
    verify_expect(f, f->v, 1, 30, "entry 30: previous-hash link broken");
}

static void test_r18_forged_chain_caught_by_checkpoint(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    sql(f, "UPDATE audit SET actor = 'user:nobody' WHERE seq = 100");
    rechain_from(f, 100);
    /* every hash and link is valid now; only the signatures know */
    verify_expect(f, f->v, 1, 128, "checkpoint at 128: the signed hash "
                  "differs from entry 128's hash (entries after the "
                  "checkpoint at 64 rewritten?)");
    /* moving the checkpoint's hash along breaks its signature */
    sql(f, "UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit"
           " WHERE seq = 128) WHERE seq = 128");
    verify_expect(f, f->v, 1, 128, "checkpoint at 128: signature invalid");
    /* a forgery reaching back before the first checkpoint */
    sql(f, "UPDATE audit SET detail = 'nothing happened' WHERE seq = 3");
    rechain_from(f, 3);
    verify_expect(f, f->v, 1, 64, "checkpoint at 64: the signed hash differs "
                  "from entry 64's hash (entries up to it rewritten?)");
}

static void test_r18_corrupted_checkpoint_signature_detected(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    sql(f, "UPDATE audit_checkpoints SET signature = substr(signature, 1, 10)"
           " || (CASE substr(signature, 11, 1) WHEN '0' THEN '1' ELSE '0' END)"
           " || substr(signature, 12) WHERE seq = 128");
    verify_expect(f, f->v, 1, 128, "checkpoint at 128: signature invalid");
    sql(f, "UPDATE audit_checkpoints SET signature = substr(signature, 1, 127)"
           " WHERE seq = 64");
    verify_expect(f, f->v, 1, 64, "checkpoint at 64: signature is malformed");
    sql(f, "DELETE FROM audit_checkpoints WHERE seq = 64");
    verify_expect(f, f->v, 1, 128, "checkpoint at 128: signature invalid");
    /* a checkpoint for an entry that never existed */
    sql(f, "UPDATE audit_checkpoints SET seq = 0 WHERE seq = 128");
    verify_expect(f, f->v, 1, 1, "checkpoint at 0: there is no entry 0");
}

static void test_r18_other_keystore_key_detected(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    char path[400];
    struct error err = {0};
    snprintf(path, sizeof(path), "%s/keystore2", f->dir);
    assert_int_equal(vault_create(path, &err), 0);
    struct vault *v2 = vault_open(path, &err);
    assert_non_null(v2);
    /* verifying with another keystore: it does not hold the signing key */
    verify_expect(f, v2, 1, 64, "checkpoint at 64: audit key ");
    verify_expect(f, v2, 1, 64, "is not in this keystore");
    /* a forger rewrites from 100 and re-signs checkpoints 128 and 192 with
     * a key of their own */
    sql(f, "UPDATE audit SET actor = 'user:nobody' WHERE seq = 100");
    rechain_from(f, 100);
    for (int64_t s = 128; s <= 192; s += 64) {
        char h[65], text[200], hex[129], id[17];
        unsigned char sig[VAULT_SIG_LEN];
        stored_hash(f, s, h);
        snprintf(text, sizeof(text), "wharf-audit-checkpoint v1\n%" PRId64
                 "\n%s\n", s, h);
        assert_int_equal(vault_audit_sign(v2, text, strlen(text), sig, id,
                                          &err), 0);
        for (int i = 0; i < VAULT_SIG_LEN; i++)
            snprintf(hex + 2 * i, 3, "%02x", sig[i]);
        char seq[24];
        snprintf(seq, sizeof(seq), "%" PRId64, s);
        const char *v[] = { h, hex, id, seq };
        sqlp(f, "UPDATE audit_checkpoints SET hash = $1, signature = $2,"
             " key_id = $3 WHERE seq = $4", 4, v);
    }
    verify_expect(f, f->v, 1, 128, "checkpoint at 128: audit key ");
    verify_expect(f, f->v, 1, 128, "is not in this keystore");
    /* claiming the real key id does not help: the signature is wrong */
    sql(f, "UPDATE audit_checkpoints SET key_id = (SELECT key_id FROM"
           " audit_checkpoints WHERE seq = 64) WHERE seq >= 128");
    verify_expect(f, f->v, 1, 128, "checkpoint at 128: signature invalid");
    vault_close(v2);
}

static void test_r18_truncation_detected_by_checkpoint_and_anchor(
    void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    /* cutting back past a checkpoint: the checkpoint at 192 says so */
    sql(f, "DELETE FROM audit WHERE seq > 180");
    verify_expect(f, f->v, 1, 181, "entry 181: missing (the trail ends at "
                  "entry 180 but a checkpoint signs entry 192; newest entries "
                  "deleted?)");
    /* deleting the checkpoint too: the anchor outside the table says so */
    sql(f, "DELETE FROM audit_checkpoints WHERE seq = 192");
    verify_expect(f, f->v, 1, 181, "entry 181: missing (the newest entries "
                  "were deleted: the signed head anchor names entry 200 "
                  "(hash ");
    verify_expect(f, f->v, 1, 181, "the trail ends at entry 180)");
    /* a fresh checkpoint of the cut trail does not hide it: the anchor is
     * kept as evidence, not moved to the new head */
    struct error err = {0};
    assert_int_equal(audit_checkpoint(f->st, f->v, &err), 0);
    verify_expect(f, f->v, 1, 181, "the signed head anchor names entry 200");
}

/* ---- the signed head anchor (DIR/state/audit.head) ------------------------ */

static void anchor_file(struct fx *f, char *out, size_t n)
{
    snprintf(out, n, "%s/state/audit.head", f->dir);
}

/* The bytes of the file at path (NUL-terminated); caller frees. */
static char *file_read(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 4096);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 4095, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* The anchor file's bytes (NUL-terminated); caller frees. */
static char *anchor_read(struct fx *f)
{
    char path[400];
    anchor_file(f, path, sizeof(path));
    return file_read(path);
}

static void anchor_put(struct fx *f, const char *text)
{
    char path[400];
    anchor_file(f, path, sizeof(path));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_r18_anchor_file_matches_documented_format(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    char path[400], h[65], want[200], sighex[129], id[17];
    anchor_file(f, path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1);       /* none before any entry */
    append_n(f, 70);
    struct stat stb;
    assert_int_equal(stat(path, &stb), 0);
    assert_int_equal(stb.st_mode & 0777, 0600);
    char *text = anchor_read(f);
    stored_hash(f, 70, h);
    snprintf(want, sizeof(want), "wharf-audit-head v1\nseq 70\nhash %s\nkey ",
             h);
    assert_memory_equal(text, want, strlen(want));
    assert_int_equal(sscanf(text + strlen(want), "%16[0-9a-f]\nsig "
                            "%128[0-9a-f]\n", id, sighex), 2);
    assert_int_equal(strlen(text), strlen(want) + 16 + 5 + 128 + 1);
    /* signed with the vault's audit key over the documented text */
    unsigned char sig[VAULT_SIG_LEN];
    for (int i = 0; i < VAULT_SIG_LEN; i++) {
        unsigned b;
        assert_int_equal(sscanf(sighex + 2 * i, "%2x", &b), 1);
        sig[i] = (unsigned char)b;
    }
    snprintf(want, sizeof(want), "wharf-audit-head v1\n70\n%s\n", h);
    assert_int_equal(vault_audit_verify(f->v, id, want, strlen(want), sig,
                                        &err), 0);
    /* not a checkpoint signature: another domain */
    snprintf(want, sizeof(want), "wharf-audit-checkpoint v1\n70\n%s\n", h);
    assert_int_equal(vault_audit_verify(f->v, id, want, strlen(want), sig,
                                        &err), -1);
    free(text);
}

static void test_r18_anchor_names_deleted_newest_entries(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    verify_expect(f, f->v, 0, 0, NULL);
    char h200[65], want[300];
    stored_hash(f, 200, h200);
    /* the newest entry alone: after the last checkpoint (192), where the
     * chain and the checkpoints cannot tell */
    sql(f, "DELETE FROM audit WHERE seq = 200");
    snprintf(want, sizeof(want), "entry 200: missing (the newest entries "
             "were deleted: the signed head anchor names entry 200 (hash %s), "
             "the trail ends at entry 199)", h200);
    struct audit_report r = verify_expect(f, f->v, 1, 200, want);
    assert_int_equal(r.entries, 199);
    sql(f, "DELETE FROM audit WHERE seq > 193");
    snprintf(want, sizeof(want), "entry 194: missing (the newest entries "
             "were deleted: the signed head anchor names entry 200 (hash %s), "
             "the trail ends at entry 193)", h200);
    verify_expect(f, f->v, 1, 194, want);
    /* everything */
    sql(f, "DELETE FROM audit; DELETE FROM audit_checkpoints");
    verify_expect(f, f->v, 1, 1, "entry 1: missing (the newest entries were "
                  "deleted: the signed head anchor names entry 200");
}

static void test_r18_anchor_catches_rewritten_newest_entries(void **state)
{
    struct fx *f = *state;
    append_n(f, 200);
    /* rewritten after the last checkpoint, with valid hashes and links */
    sql(f, "UPDATE audit SET actor = 'user:nobody' WHERE seq = 197");
    rechain_from(f, 197);
    verify_expect(f, f->v, 1, 200, "entry 200: its hash differs from the one "
                  "the signed head anchor names (the newest entries "
                  "rewritten?)");
}

static void test_r18_anchor_missing_or_forged_is_reported(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    append_n(f, 20);
    char path[400], *good = anchor_read(f);
    anchor_file(f, path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    verify_expect(f, f->v, 1, 21, "the signed head anchor ");
    verify_expect(f, f->v, 1, 21, "audit.head is missing (deleted?)");
    anchor_put(f, "wharf-audit-head v1\nseq 20\n");
    verify_expect(f, f->v, 1, 21, "does not verify (replaced or edited?): it "
                  "is malformed");
    /* another spelling of the same fields is not the anchor either */
    char *spaced = strdup(good);
    assert_non_null(spaced);
    spaced[strlen("wharf-audit-head v1\nseq")] = '\t';
    anchor_put(f, spaced);
    verify_expect(f, f->v, 1, 21, "it is malformed");
    /* a flipped signature digit */
    char *flipped = strdup(good);
    char *sig = strstr(flipped, "\nsig ") + 5;
    sig[7] = sig[7] == '0' ? '1' : '0';
    anchor_put(f, flipped);
    verify_expect(f, f->v, 1, 21, "signature invalid");
    /* an anchor naming a later entry, signature kept: invalid */
    char *later = strdup(good);
    later[strlen("wharf-audit-head v1\nseq 2")] = '9';      /* seq 29 */
    anchor_put(f, later);
    verify_expect(f, f->v, 1, 21, "signature invalid");
    /* an anchor signed by another keystore's audit key */
    char ks2[400], h[65], text[200];
    unsigned char s2[VAULT_SIG_LEN];
    char id2[17], hex[129], file[600];
    snprintf(ks2, sizeof(ks2), "%s/keystore2", f->dir);
    assert_int_equal(vault_create(ks2, &err), 0);
    struct vault *v2 = vault_open(ks2, &err);
    assert_non_null(v2);
    stored_hash(f, 20, h);
    snprintf(text, sizeof(text), "wharf-audit-head v1\n20\n%s\n", h);
    assert_int_equal(vault_audit_sign(v2, text, strlen(text), s2, id2, &err),
                     0);
    for (int i = 0; i < VAULT_SIG_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", s2[i]);
    snprintf(file, sizeof(file), "wharf-audit-head v1\nseq 20\nhash %s\nkey "
             "%s\nsig %s\n", h, id2, hex);
    anchor_put(f, file);
    verify_expect(f, f->v, 1, 21, "is not in this keystore");
    vault_close(v2);
    /* the genuine one again */
    anchor_put(f, good);
    verify_expect(f, f->v, 0, 0, NULL);
    free(good);
    free(spaced);
    free(flipped);
    free(later);
}

static void test_r18_anchor_may_lag_never_lead(void **state)
{
    struct fx *f = *state;
    append_n(f, 10);
    char *at10 = anchor_read(f);
    append_n(f, 1);
    /* a crash between the commit of entry 11 and its anchor write leaves
     * the anchor at 10: that is not a break */
    anchor_put(f, at10);
    verify_expect(f, f->v, 0, 0, NULL);
    /* the next entry moves it to the head */
    append_n(f, 1);
    char *at12 = anchor_read(f);
    assert_non_null(strstr(at12, "\nseq 12\n"));
    verify_expect(f, f->v, 0, 0, NULL);
    sql(f, "DELETE FROM audit WHERE seq = 12");
    verify_expect(f, f->v, 1, 12, "the signed head anchor names entry 12");
    free(at10);
    free(at12);
}

static void test_r18_anchor_kept_when_the_trail_was_cut(void **state)
{
    struct fx *f = *state;
    append_n(f, 10);
    sql(f, "DELETE FROM audit WHERE seq > 8");
    char *before = anchor_read(f);
    /* honest activity after the cut: entries 9 and 10 again, but the
     * anchor naming the deleted 10 stays (it is the evidence) */
    append_n(f, 2);
    char *after = anchor_read(f);
    assert_string_equal(before, after);
    verify_expect(f, f->v, 1, 10, "entry 10: its hash differs from the one "
                  "the signed head anchor names");
    free(before);
    free(after);
}

/* R21: two nodes of one PostgreSQL store, each with its data dir: each
 * anchors the shared trail as it read it after its own append (entries
 * of the other node included); a node's anchor may lag the other's
 * entries, never lead; the newest entries deleted are reported by the
 * node whose anchor names them. SQLite: one node, the anchor beside the
 * database, checked the same. */
static void test_r21_each_node_anchors_the_shared_trail(void **state)
{
    struct fx *f = *state;
    char dir_b[300], path_b[400];
    append_n(f, 10);                                /* node a */
    snprintf(dir_b, sizeof(dir_b), "%s/node-b", f->dir);
    assert_int_equal(mkdir(dir_b, 0700), 0);
    if (!g_pg) {                                    /* one node */
        verify_expect(f, f->v, 0, 0, NULL);
        return;
    }
    audit_set_node_dir(f->db, dir_b);               /* node b's process */
    append_n(f, 5);
    snprintf(path_b, sizeof(path_b), "%s/state/audit.head", dir_b);
    char *at_a = anchor_read(f), *at_b = file_read(path_b);
    assert_non_null(strstr(at_a, "\nseq 10\n"));   /* lags: a's last */
    assert_non_null(strstr(at_b, "\nseq 15\n"));   /* a's entries too */
    verify_expect(f, f->v, 0, 0, NULL);
    sql(f, "DELETE FROM audit WHERE seq > 12");
    verify_expect(f, f->v, 1, 13, "the signed head anchor names entry 15");
    audit_set_node_dir(f->db, f->dir);              /* node a: its anchor */
    verify_expect(f, f->v, 0, 0, NULL);             /* names 10: intact */
    free(at_a);
    free(at_b);
}

/* R22: serve's sandbox lets it write nowhere in DIR itself, so the anchor
 * lives in DIR/state/; the DIR/audit.head of an older data dir is moved
 * there at the next verify (or append) and still counts. */
static void test_r22_anchor_of_an_older_data_dir_moves_into_state(void **state)
{
    struct fx *f = *state;
    char path[400], old[400];
    append_n(f, 10);
    char *at10 = anchor_read(f);
    anchor_file(f, path, sizeof(path));
    snprintf(old, sizeof(old), "%s/audit.head", f->dir);
    assert_int_equal(rename(path, old), 0);         /* the old layout */
    verify_expect(f, f->v, 0, 0, NULL);             /* found and moved */
    assert_int_equal(access(old, F_OK), -1);
    char *moved = anchor_read(f);
    assert_string_equal(moved, at10);
    /* and it is still the evidence it was: the newest entry deleted */
    assert_int_equal(rename(path, old), 0);
    sql(f, "DELETE FROM audit WHERE seq = 10");
    verify_expect(f, f->v, 1, 10, "the signed head anchor names entry 10");
    free(at10);
    free(moved);
}

static void test_r18_anchor_window_older_anchor_put_back(void **state)
{
    /* The window docs/operations.md states: someone who can write the data
     * dir and kept an older anchor file can put it back and delete every
     * entry after the one it names; the data dir alone cannot tell. */
    struct fx *f = *state;
    append_n(f, 10);
    char *at10 = anchor_read(f);
    append_n(f, 10);
    anchor_put(f, at10);
    sql(f, "DELETE FROM audit WHERE seq > 10");
    struct audit_report r = verify_expect(f, f->v, 0, 0, NULL);
    assert_int_equal(r.entries, 10);
    free(at10);
}

static void test_r18_anchor_survives_key_rotation(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    append_n(f, 30);
    char *before = anchor_read(f);
    assert_int_equal(vault_rotate(f->v, f->ks, &err), 0);
    assert_int_equal(vault_retire_old(f->v, f->ks, &err), 0);
    struct vault *v2 = vault_open(f->ks, &err);
    assert_non_null(v2);
    verify_expect(f, v2, 0, 0, NULL);
    append_one(f, v2, 31);
    char *after = anchor_read(f);
    assert_non_null(strstr(after, "\nseq 31\n"));
    verify_expect(f, v2, 0, 0, NULL);
    sql(f, "DELETE FROM audit WHERE seq = 31");
    verify_expect(f, v2, 1, 31, "the signed head anchor names entry 31");
    vault_close(v2);
    free(before);
    free(after);
}

struct appender {
    struct fx *f;
    int base;
};

static void *append_thread(void *arg)
{
    struct appender *a = arg;
    struct error err = {0};
    struct store *st = store_open(a->f->db, &err);
    assert_non_null(st);
    for (int i = 0; i < 25; i++) {
        struct audit_event e = { "user:t", NULL, "login.success", NULL,
                                 NULL };
        if (audit_append(st, a->f->v, &e, &err) != 0)
            fail_msg("append: %s", err.msg);
    }
    store_close(st);
    return NULL;
}

static void test_r18_anchor_follows_concurrent_appenders(void **state)
{
    struct fx *f = *state;
    pthread_t t[4];
    struct appender a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct appender){ f, i };
        assert_int_equal(pthread_create(&t[i], NULL, append_thread, &a[i]),
                         0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *text = anchor_read(f);
    assert_non_null(strstr(text, "\nseq 100\n"));       /* the newest */
    verify_expect(f, f->v, 0, 0, NULL);
    sql(f, "DELETE FROM audit WHERE seq = 100");
    verify_expect(f, f->v, 1, 100, "the signed head anchor names entry 100");
    free(text);
}

/* ---- R21: several nodes appending to one trail ---------------------------- */

#define NODES 3
#define PER_NODE 200

struct node_run {
    struct fx *f;
    int node;
    char err[300];
};

/* A node: its own connection, PER_NODE entries "node<k>" / "<i>". */
static void *node_append(void *arg)
{
    struct node_run *r = arg;
    struct error err = {0};
    struct store *st = store_open(r->f->db, &err);
    char actor[32], detail[32];
    snprintf(actor, sizeof(actor), "node%d", r->node);
    for (int i = 0; st && i < PER_NODE; i++) {
        snprintf(detail, sizeof(detail), "%d", i);
        struct audit_event e = { actor, NULL, "flow.import", NULL, detail };
        if (audit_append(st, r->f->v, &e, &err) != 0)
            break;
    }
    snprintf(r->err, sizeof(r->err), "%s", err.msg);
    store_close(st);
    return NULL;
}

/* Three nodes appending at once leave ONE chain: numbered 1..600 without a
 * gap, each linked to the one before, every checkpoint signing the entry
 * it names, and every node's every entry in it exactly once. */
static void test_r21_nodes_appending_together_keep_one_chain(void **state)
{
    struct fx *f = *state;
    struct node_run runs[NODES];
    pthread_t th[NODES];
    for (int i = 0; i < NODES; i++) {
        runs[i] = (struct node_run){ .f = f, .node = i };
        assert_int_equal(pthread_create(&th[i], NULL, node_append, &runs[i]),
                         0);
    }
    for (int i = 0; i < NODES; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NODES; i++)
        if (runs[i].err[0])
            fail_msg("node %d: %s", i, runs[i].err);
    struct audit_report r = verify_expect(f, f->v, 0, 0, NULL);
    assert_int_equal(r.entries, NODES * PER_NODE);
    assert_int_equal(r.checkpoints, NODES * PER_NODE / 64);
    static int seen[NODES][PER_NODE];
    memset(seen, 0, sizeof(seen));
    struct store_audit_row *rows;
    size_t n;
    struct error err = {0};
    assert_int_equal(store_audit_list(f->st, 0, 10000, &rows, &n, &err), 0);
    assert_int_equal(n, NODES * PER_NODE);
    for (size_t i = 0; i < n; i++) {
        int node = -1, k = -1;
        assert_int_equal(rows[i].seq, (int64_t)i + 1);
        assert_int_equal(sscanf(rows[i].actor, "node%d", &node), 1);
        assert_int_equal(sscanf(rows[i].detail, "%d", &k), 1);
        assert_true(node >= 0 && node < NODES && k >= 0 && k < PER_NODE);
        seen[node][k]++;
    }
    store_audit_rows_free(rows, n);
    for (int i = 0; i < NODES; i++)
        for (int k = 0; k < PER_NODE; k++)
            if (seen[i][k] != 1)
                fail_msg("node %d entry %d is in the trail %d times", i, k,
                         seen[i][k]);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    /* the trail: both backends */
#define BOTH \
        T(test_r18_empty_trail_verifies), \
        T(test_r18_chain_of_200_verifies), \
        T(test_r18_entry_hash_matches_documented_encoding), \
        T(test_r18_checkpoint_every_64_and_on_demand), \
        T(test_r18_verify_crosses_pages), \
        T(test_r18_append_validates_event), \
        T(test_r18_keystore_without_audit_key_rolls_back), \
        T(test_r18_edited_field_detected), \
        T(test_r18_field_boundaries_are_unambiguous), \
        T(test_r18_deleted_entry_detected), \
        T(test_r18_inserted_entry_detected), \
        T(test_r18_inserted_entry_breaks_next_link), \
        T(test_r18_reordered_entries_detected), \
        T(test_r18_forged_chain_caught_by_checkpoint), \
        T(test_r18_corrupted_checkpoint_signature_detected), \
        T(test_r18_other_keystore_key_detected), \
        T(test_r21_nodes_appending_together_keep_one_chain), \
        /* the signed head anchor: beside the database file (SQLite), in \
         * the node's data dir (PostgreSQL) */ \
        T(test_r18_truncation_detected_by_checkpoint_and_anchor), \
        T(test_r18_anchor_file_matches_documented_format), \
        T(test_r18_anchor_names_deleted_newest_entries), \
        T(test_r18_anchor_catches_rewritten_newest_entries), \
        T(test_r18_anchor_missing_or_forged_is_reported), \
        T(test_r18_anchor_may_lag_never_lead), \
        T(test_r18_anchor_kept_when_the_trail_was_cut), \
        T(test_r18_anchor_window_older_anchor_put_back), \
        T(test_r18_anchor_survives_key_rotation), \
        T(test_r18_anchor_follows_concurrent_appenders), \
        T(test_r21_each_node_anchors_the_shared_trail)
    const struct CMUnitTest sqlite[] = {
        BOTH,
        T(test_r22_anchor_of_an_older_data_dir_moves_into_state),
    };
    const struct CMUnitTest postgresql[] = {
        BOTH,
    };
#undef BOTH
#undef T
    int failed = cmocka_run_group_tests_name("audit (sqlite)", sqlite, NULL,
                                             NULL);
    g_pg = 1;
    failed += cmocka_run_group_tests_name("audit (postgresql)", postgresql,
                                          NULL, NULL);
    return failed;
}
