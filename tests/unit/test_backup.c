/*
 * test_backup.c - unit tests of backups (R20): the container format
 * (round trip, every kind of tampering, truncation, reordering, a wrong
 * key, unsafe names, the header JSON), the key block for a backup
 * certificate (vault_backup.h: the right key opens it and carries the
 * keystore, another key and a changed block are refused), and the
 * database side (a snapshot copy taken while a write transaction is open
 * holds only what was committed; the backups record has the shape the
 * posture report reads; a PostgreSQL store's logical export into a SQLite
 * copy and its load into an empty database keep every row, byte for
 * byte, and the trail verifies there). Each test owns what it creates.
 */
#include "testutil.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "audit/audit.h"
#include "core/backup_format.h"
#include "store/backup_store.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/secret.h"
#include "vault/vault.h"
#include "vault/vault_backup.h"

#define SEG (BACKUP_SEGMENT + 16)

static const unsigned char KEY[BACKUP_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const unsigned char SIG[BACKUP_SIG_LEN] = { 9, 9, 9 };
#define KEY_ID "0123456789abcdef"

/* ---- helpers ---------------------------------------------------------- */

struct mem {
    unsigned char *p;
    size_t n, off;
};

static ssize_t mem_read(void *ctx, void *out, size_t n, struct error *err)
{
    struct mem *m = ctx;
    (void)err;
    size_t k = m->n - m->off < n ? m->n - m->off : n;
    memcpy(out, m->p + m->off, k);
    m->off += k;
    return (ssize_t)k;
}

static void info_fill(struct backup_info *i)
{
    memset(i, 0, sizeof(*i));
    id_new(i->backup_id);
    i->created_ms = 1700000000000;
    snprintf(i->node, sizeof(i->node), "node-a");
    snprintf(i->wharf_version, sizeof(i->wharf_version), "0.1.0");
    snprintf(i->store, sizeof(i->store), "sqlite");
    i->schema_version = 8;
    i->messages = 3;
    i->payloads = 1;
    i->recipient = BACKUP_TO_MASTER_KEY;
    snprintf(i->master_key_id, sizeof(i->master_key_id), "00112233aabbccdd");
}

struct ent {
    enum backup_entry_kind kind;
    const char *name;
    size_t size;
    unsigned char *data;
};

/* A container of the entries into a malloc'ed buffer. */
static struct mem build(struct ent *e, size_t n)
{
    struct backup_info i;
    struct error err = {0};
    const unsigned char kb[8] = "keyblock";
    info_fill(&i);
    int fd = memfd_create("backup", MFD_CLOEXEC);
    assert_true(fd >= 0);
    struct backup_writer *w = backup_writer_open(fd, &i, kb, sizeof(kb), KEY,
                                                 &err);
    if (w == NULL)
        fail_msg("writer: %s", err.msg);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(backup_writer_begin(w, e[k].kind, e[k].name,
                                             e[k].size, &err), 0);
        size_t half = e[k].size / 2;
        assert_int_equal(backup_writer_data(w, e[k].data, half, &err), 0);
        assert_int_equal(backup_writer_data(w, e[k].data + half,
                                            e[k].size - half, &err), 0);
        assert_int_equal(backup_writer_end(w, &err), 0);
    }
    assert_int_equal(backup_writer_finish(w, KEY_ID, SIG, &err), 0);
    struct mem m = { .n = (size_t)backup_writer_bytes(w) };
    backup_writer_free(w);
    m.p = malloc(m.n);
    assert_non_null(m.p);
    assert_int_equal(pread(fd, m.p, m.n, 0), (ssize_t)m.n);
    close(fd);
    return m;
}

static unsigned char *rand_bytes(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    assert_int_equal(RAND_bytes(p, (int)(n ? n : 1)), 1);
    return p;
}

/* Read every entry of m with key; 0 when all of it checked out, else -1
 * with err. got (optional) receives each entry's data concatenated. */
static int read_all(struct mem *m, const unsigned char *key,
                    struct error *err, size_t *entries)
{
    m->off = 0;
    *entries = 0;
    struct backup_reader *r = backup_reader_open(mem_read, m, err);
    if (r == NULL)
        return -1;
    backup_reader_key(r, key);
    struct backup_entry e;
    unsigned char buf[7000];
    int rc;
    while ((rc = backup_reader_next(r, &e, err)) == 1) {
        ssize_t k;
        (*entries)++;
        while ((k = backup_reader_data(r, buf, sizeof(buf), err)) > 0)
            ;
        if (k < 0) {
            rc = -1;
            break;
        }
    }
    backup_reader_free(r);
    return rc;
}

/* The file offset where the segments start. */
static size_t body_off(const struct mem *m)
{
    size_t j = ((size_t)m->p[16] << 24) | ((size_t)m->p[17] << 16) |
               ((size_t)m->p[18] << 8) | m->p[19];
    size_t o = 20 + j;
    size_t k = ((size_t)m->p[o] << 24) | ((size_t)m->p[o + 1] << 16) |
               ((size_t)m->p[o + 2] << 8) | m->p[o + 3];
    return o + 4 + k;
}

/* ---- the container ------------------------------------------------------ */

static void test_r20_container_round_trip(void **state)
{
    (void)state;
    struct ent e[] = {
        { BACKUP_ENTRY_FILE, "wharf.db", 200000, rand_bytes(200000) },
        { BACKUP_ENTRY_FILE, "empty", 0, rand_bytes(0) },
        { BACKUP_ENTRY_MISSING, "payloads/20260101/gone.wpay", 0,
          rand_bytes(0) },
        { BACKUP_ENTRY_FILE, "tls/cert.pem", BACKUP_SEGMENT,
          rand_bytes(BACKUP_SEGMENT) },
    };
    struct mem m = build(e, 4);
    struct error err = {0};
    struct backup_reader *r = backup_reader_open(mem_read, &m, &err);
    assert_non_null(r);
    assert_string_equal(backup_reader_info(r)->node, "node-a");
    assert_int_equal(backup_reader_info(r)->recipient, BACKUP_TO_MASTER_KEY);
    size_t klen;
    assert_memory_equal(backup_reader_keyblock(r, &klen), "keyblock", 8);
    backup_reader_key(r, KEY);
    unsigned char *buf = malloc(200000);
    uint64_t total = 0;
    for (size_t k = 0; k < 4; k++) {
        struct backup_entry be;
        assert_int_equal(backup_reader_next(r, &be, &err), 1);
        assert_string_equal(be.name, e[k].name);
        assert_int_equal(be.kind, e[k].kind);
        assert_int_equal(be.size, e[k].size);
        size_t got = 0;
        ssize_t n;
        while ((n = backup_reader_data(r, buf + got, 3000, &err)) > 0)
            got += (size_t)n;
        assert_int_equal(n, 0);
        assert_int_equal(got, e[k].size);
        if (got > 0)
            assert_memory_equal(buf, e[k].data, got);
        total += got;
    }
    struct backup_entry be;
    assert_int_equal(backup_reader_next(r, &be, &err), 0);
    const struct backup_trailer *t = backup_reader_trailer(r);
    assert_non_null(t);
    assert_int_equal(t->entries, 4);
    assert_int_equal(t->bytes, total);
    assert_string_equal(t->key_id, KEY_ID);
    assert_memory_equal(t->sig, SIG, BACKUP_SIG_LEN);
    assert_int_equal(backup_reader_offset(r), m.n);
    backup_reader_free(r);
    for (size_t k = 0; k < 4; k++)
        free(e[k].data);
    free(buf);
    free(m.p);
}

/* The plaintext fills the final segment exactly (173 bytes of framing and
 * trailer around one 1-byte-named entry). */
static void test_r20_container_final_segment_exactly_full(void **state)
{
    (void)state;
    size_t size = 2 * BACKUP_SEGMENT - 173;
    struct ent e[] = { { BACKUP_ENTRY_FILE, "a", size, rand_bytes(size) } };
    struct mem m = build(e, 1);
    assert_int_equal(m.n, body_off(&m) + 2 * SEG);
    struct error err = {0};
    size_t n;
    if (read_all(&m, KEY, &err, &n) != 0)
        fail_msg("read: %s", err.msg);
    assert_int_equal(n, 1);
    free(e[0].data);
    free(m.p);
}

/* Each change must make the read fail, with a message. */
static void expect_refused(struct mem *m, const char *what)
{
    struct error err = {0};
    size_t n;
    if (read_all(m, KEY, &err, &n) == 0)
        fail_msg("%s: the damaged container was read as good", what);
    assert_true(strlen(err.msg) > 10);
}

static struct mem copy_of(const struct mem *m, size_t n)
{
    struct mem c = { .p = malloc(n + SEG), .n = n };
    assert_non_null(c.p);
    memcpy(c.p, m->p, n < m->n ? n : m->n);
    return c;
}

static void test_r20_container_tampering_refused(void **state)
{
    (void)state;
    struct ent e[] = {
        { BACKUP_ENTRY_FILE, "wharf.db", 3 * BACKUP_SEGMENT + 500,
          rand_bytes(3 * BACKUP_SEGMENT + 500) },
    };
    struct mem m = build(e, 1);
    size_t body = body_off(&m);
    size_t flips[] = {
        0, 8, 12, 25, body - 1,           /* magic, version, prefix, JSON,
                                             key block */
        body + 10, body + SEG - 1,        /* segment 0, its tag */
        body + SEG + 100,                 /* segment 1 */
        m.n - 70, m.n - 1,                /* the trailer in the final one */
    };
    for (size_t k = 0; k < sizeof(flips) / sizeof(flips[0]); k++) {
        struct mem c = copy_of(&m, m.n);
        c.p[flips[k]] ^= 0x01;
        char what[64];
        snprintf(what, sizeof(what), "byte %zu flipped", flips[k]);
        expect_refused(&c, what);
        free(c.p);
    }
    size_t cuts[] = { 5, 19, body - 3, body, body + 100, body + SEG,
                      body + 2 * SEG, m.n - 1 };
    for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
        struct mem c = copy_of(&m, cuts[k]);
        expect_refused(&c, "truncated");
        free(c.p);
    }
    struct mem c = copy_of(&m, m.n + 1);     /* a byte appended */
    c.p[m.n] = 0;
    expect_refused(&c, "appended");
    free(c.p);
    c = copy_of(&m, m.n);                    /* segments 0 and 1 swapped */
    memcpy(c.p + body, m.p + body + SEG, SEG);
    memcpy(c.p + body + SEG, m.p + body, SEG);
    expect_refused(&c, "segments swapped");
    free(c.p);
    c = copy_of(&m, m.n - SEG);              /* a middle segment dropped */
    memcpy(c.p + body + SEG, m.p + body + 2 * SEG, m.n - body - 2 * SEG);
    expect_refused(&c, "segment dropped");
    free(c.p);
    unsigned char other[BACKUP_KEY_LEN] = { 7 };
    struct error err = {0};
    size_t n;
    assert_int_equal(read_all(&m, other, &err, &n), -1);
    assert_non_null(strstr(err.msg, "does not authenticate"));
    free(e[0].data);
    free(m.p);
}

/* Authentic segments around records nobody honest writes: a name with
 * "..", a missing entry with data, an unknown kind, bytes after the
 * trailer. The reader refuses each. */
static void raw_case(const unsigned char *plain, size_t n, const char *want)
{
    struct backup_info i;
    struct error err = {0};
    info_fill(&i);
    int fd = memfd_create("raw", MFD_CLOEXEC);
    struct backup_writer *w = backup_writer_open(fd, &i, (const void *)"k", 1,
                                                 KEY, &err);
    assert_non_null(w);
    assert_int_equal(backup_writer_raw(w, plain, n, 1, &err), 0);
    struct mem m = { .n = (size_t)backup_writer_bytes(w) };
    backup_writer_free(w);
    m.p = malloc(m.n);
    assert_int_equal(pread(fd, m.p, m.n, 0), (ssize_t)m.n);
    close(fd);
    size_t entries;
    assert_int_equal(read_all(&m, KEY, &err, &entries), -1);
    if (strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in: %s", want, err.msg);
    free(m.p);
}

static void test_r20_container_bad_records_refused(void **state)
{
    (void)state;
    unsigned char dots[] = { 'F', 0, 5, '.', '.', '/', 'x', 'y',
                             0, 0, 0, 0, 0, 0, 0, 0 };
    raw_case(dots, sizeof(dots), "unsafe entry");
    unsigned char abs[] = { 'F', 0, 4, '/', 'e', 't', 'c',
                            0, 0, 0, 0, 0, 0, 0, 0 };
    raw_case(abs, sizeof(abs), "unsafe entry");
    unsigned char missing[] = { 'M', 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 1 };
    raw_case(missing, sizeof(missing), "missing entry with data");
    unsigned char kind[] = { 'Z', 0, 1, 'a' };
    raw_case(kind, sizeof(kind), "unknown record kind");
    unsigned char cut[] = { 'F', 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 9, 1, 2 };
    raw_case(cut, sizeof(cut), "ends inside a record");
    unsigned char trailer[130] = { 'E' };
    raw_case(trailer, sizeof(trailer), "trailer");
}

static void test_r20_entry_names(void **state)
{
    (void)state;
    const char *good[] = { "wharf.db", "tls/cert.pem", "payloads/20260101/"
                           "01a2-b.wpay", "a_b-c.d", "..x", NULL };
    const char *bad[] = { "", "/etc/passwd", "a/../b", "..", ".", "a//b",
                          "a/", "a b", "a\\b", "a/./b", "x\xc3\xa9",
                          "1/2/3/4/5/6/7/8/9", NULL };
    for (size_t i = 0; good[i]; i++)
        if (!backup_name_ok(good[i]))
            fail_msg("%s refused", good[i]);
    for (size_t i = 0; bad[i]; i++)
        if (backup_name_ok(bad[i]))
            fail_msg("%s allowed", bad[i]);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_false(backup_name_ok(longname));
}

static void test_r20_header_json(void **state)
{
    (void)state;
    struct backup_info i, o;
    struct error err = {0};
    info_fill(&i);
    i.recipient = BACKUP_TO_PUBLIC_KEY;
    memset(i.spki_sha256, 'a', 64);
    snprintf(i.subject, sizeof(i.subject), "/CN=backup");
    i.has_keystore = 1;
    char *j = backup_info_json(&i, &err);
    assert_non_null(j);
    assert_int_equal(backup_info_parse(j, strlen(j), &o, &err), 0);
    assert_string_equal(o.backup_id, i.backup_id);
    assert_string_equal(o.spki_sha256, i.spki_sha256);
    assert_string_equal(o.subject, "/CN=backup");
    assert_int_equal(o.recipient, BACKUP_TO_PUBLIC_KEY);
    assert_int_equal(o.has_keystore, 1);
    assert_int_equal(o.messages, 3);
    char *at = strstr(j, i.backup_id);      /* a complete header, bad id */
    assert_non_null(at);
    memset(at, 'z', ID_LEN);
    assert_int_equal(backup_info_parse(j, strlen(j), &o, &err), -1);
    assert_non_null(strstr(err.msg, "backup_id"));
    free(j);
    const char *bad[] = {
        "[]", "{", "{\"format\":\"wharf-backup\",\"version\":2}",
        "{\"format\":\"tar\",\"version\":1}",
        "{\"format\":\"wharf-backup\",\"version\":1,\"backup_id\":\"x\"}",
        NULL,
    };
    for (size_t k = 0; bad[k]; k++)
        assert_int_equal(backup_info_parse(bad[k], strlen(bad[k]), &o, &err),
                         -1);
}

/* ---- the key block for a backup certificate ------------------------------ */

struct fx {
    char dir[256];
    char ks[320], crt[320], key[320], other[320];
    struct vault *v;
};

static void write_key_cert(EVP_PKEY *pk, const char *key, const char *crt)
{
    FILE *f = fopen(key, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL),
                     1);
    fclose(f);
    if (crt == NULL)
        return;
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                               (const unsigned char *)"unit-backup", -1, -1,
                               0);
    X509_set_issuer_name(x, nm);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    f = fopen(crt, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct error err = {0};
    assert_non_null(f);
    test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->ks, sizeof(f->ks), "%s/keystore", f->dir);
    snprintf(f->crt, sizeof(f->crt), "%s/backup.crt", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/backup.key", f->dir);
    snprintf(f->other, sizeof(f->other), "%s/other.key", f->dir);
    assert_int_equal(vault_create(f->ks, &err), 0);
    f->v = vault_open(f->ks, &err);
    assert_non_null(f->v);
    EVP_PKEY *a = EVP_RSA_gen(2048), *b = EVP_EC_gen("P-256");
    assert_non_null(a);
    assert_non_null(b);
    write_key_cert(a, f->key, f->crt);
    write_key_cert(b, f->other, NULL);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vault_close(f->v);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static void test_r20_keyblock_for_a_certificate(void **state)
{
    struct fx *f = *state;
    struct error err = {0};
    struct secret *ck = secret_from(KEY, sizeof(KEY)), *got = NULL;
    unsigned char *der = NULL;
    size_t n = 0;
    char fp[65], subj[256];
    if (vault_backup_wrap(f->v, f->crt, ck, &der, &n, fp, subj, sizeof(subj),
                          &err) != 0)
        fail_msg("wrap: %s", err.msg);
    assert_non_null(strstr(subj, "unit-backup"));
    struct vault *v = NULL;
    if (vault_backup_unwrap(f->key, fp, der, n, &got, &v, &err) != 0)
        fail_msg("unwrap: %s", err.msg);
    assert_true(secret_equal(ck, got));
    /* the carried keystore is this vault's: same master key, and it signs
     * what this vault verifies */
    assert_string_equal(vault_active_id(v), vault_active_id(f->v));
    unsigned char sig[VAULT_SIG_LEN];
    char kid[VAULT_KEY_ID_LEN + 1];
    assert_int_equal(vault_audit_sign(v, "m", 1, sig, kid, &err), 0);
    assert_int_equal(vault_audit_verify(f->v, kid, "m", 1, sig, &err), 0);
    secret_free(got);
    vault_close(v);
    got = NULL;
    v = NULL;
    /* another private key: refused by its public key's hash */
    assert_int_equal(vault_backup_unwrap(f->other, fp, der, n, &got, &v,
                                         &err), -1);
    assert_non_null(strstr(err.msg, "another key"));
    /* a changed block: refused, nothing returned */
    der[n - 5] ^= 1;
    assert_int_equal(vault_backup_unwrap(f->key, fp, der, n, &got, &v, &err),
                     -1);
    assert_null(got);
    assert_null(v);
    free(der);
    secret_free(ck);
}

/* ---- the database side ------------------------------------------------------ */

static int64_t count_settings(const char *db, const char *key)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT COUNT(*) FROM settings"
                                        " WHERE key = ?1", -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
    return n;
}

static void test_r20_snapshot_holds_only_what_was_committed(void **state)
{
    struct fx *f = *state;
    char db[400], copy[400];
    struct error err = {0};
    snprintf(db, sizeof(db), "%s/wharf.db", f->dir);
    snprintf(copy, sizeof(copy), "%s/copy.db", f->dir);
    struct store *a = store_open(db, &err), *b = store_open(db, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(store_setting_set(a, "committed", "1", &err), 0);
    /* b writes without committing while the copy is taken */
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE; INSERT INTO settings"
                                  "(key, value) VALUES('pending', '1')",
                                  NULL, NULL, NULL), SQLITE_OK);
    struct store_backup_counts c;
    if (store_backup_copy(db, copy, &c, &err) != 0)
        fail_msg("copy: %s", err.msg);
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(c.schema_version, STORE_SCHEMA_VERSION);
    assert_int_equal(count_settings(copy, "committed"), 1);
    assert_int_equal(count_settings(copy, "pending"), 0);
    assert_int_equal(count_settings(db, "pending"), 1);
    assert_int_equal(store_backup_check(copy, &err), 0);
    struct stat sb;
    assert_int_equal(stat(copy, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* an existing copy path is never overwritten */
    assert_int_equal(store_backup_copy(db, copy, &c, &err), -1);
    store_close(b);
    store_close(a);
}

static void test_r20_backups_record_shape(void **state)
{
    struct fx *f = *state;
    char db[400];
    struct error err = {0};
    snprintf(db, sizeof(db), "%s/wharf.db", f->dir);
    struct store *s = store_open(db, &err);
    assert_non_null(s);
    struct store_backup_row ok = { .started_at = 10, .finished_at = 20,
        .ok = 1, .location = "/b/one", .bytes = 5, .kind = "master-key",
        .backup_id = "x", .messages = 2, .payloads = 2, .sha256 = "ab" };
    struct store_backup_row bad = { .started_at = 30, .finished_at = 40,
        .location = "/b/two", .kind = "public-key", .error = "disk full" };
    assert_int_equal(store_backup_record(s, &ok, &err), 0);
    assert_int_equal(store_backup_record(s, &bad, &err), 0);
    struct store_backup_item *it;
    size_t n;
    assert_int_equal(store_backup_list(s, 10, &it, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(it[0].ok, 0);
    assert_string_equal(it[0].error, "disk full");
    assert_string_equal(it[1].location, "/b/one");
    store_backup_items_free(it, n);
    store_close(s);
    /* the posture report's query (store/posture_store.h) */
    sqlite3 *h = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT finished_at, location"
                                        " FROM backups WHERE ok = 1 ORDER BY"
                                        " finished_at DESC LIMIT 1", -1, &q,
                                        NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(q, 0), 20);
    assert_string_equal((const char *)sqlite3_column_text(q, 1), "/b/one");
    sqlite3_finalize(q);
    sqlite3_close(h);
}

/* ---- a PostgreSQL store: export and load ------------------------------- */

static const unsigned char BLOB[] = { 0, 1, 0xff, 0x80, '\\', 'x', 0 };

/* A message with a hop, a sealed blob, a backup row and two audit entries
 * in the store at url. */
static void pg_fill(struct store *s, struct vault *v, char id[ID_LEN + 1])
{
    struct error err = {0};
    struct store_message m;
    const char *next[] = { "outbox" };
    memset(&m, 0, sizeof(m));
    id_new(m.id);
    snprintf(id, ID_LEN + 1, "%s", m.id);
    m.created_at = 1000;
    m.source = (char *)"inbox";
    m.filename = (char *)"a.edi";
    m.size = 42;
    m.payload_path = (char *)"payloads/20261205/x.wpay";
    struct store_new it = { .msg = &m, .next = next, .nnext = 1 };
    struct store_backup_row row = { .started_at = 1, .finished_at = 2,
        .ok = 1, .location = "/b/one", .kind = "master-key" };
    struct audit_event e = { .actor = "cli", .action = "test.one" };
    if (store_intake(s, &it, 1, &err) != 0 ||
        store_setting_set(s, "k", "v\xc3\xa9", &err) != 0 ||
        store_csecret_put(s, "c", "n", BLOB, sizeof(BLOB), 0, &err) != 0 ||
        store_backup_record(s, &row, &err) != 0 ||
        audit_append(s, v, &e, &err) != 0 ||
        audit_append(s, v, &e, &err) != 0)
        fail_msg("fill: %s", err.msg);
}

/* The load into dst: the rows are there as they were, the trail verifies,
 * new rows get ids past the loaded ones, and a second load is refused. */
static void pg_check_loaded(struct store *d, struct vault *v,
                            const char *id, const char *copy,
                            const char *dst)
{
    struct error err = {0};
    struct store_message m;
    char *val = NULL;
    unsigned char *blob = NULL;
    size_t len = 0;
    struct audit_report ar;
    assert_int_equal(store_message_get(d, id, &m, &err), 0);
    assert_int_equal(m.size, 42);
    store_message_clear(&m);
    /* its hop keeps the message's size: a lane from 43 bytes has nothing,
     * one from 42 takes it (hops.size, the large lane's index) */
    struct store_lane from43 = { 43, INT64_MAX }, from42 = { 42, INT64_MAX };
    struct store_hop *h = NULL;
    size_t nh = 0;
    assert_int_equal(store_hop_lease_lane(d, "w", time_now_ms(), 60000, 5,
                                          &from43, &h, &nh, &err), 0);
    assert_int_equal(nh, 0);
    store_hops_free(h, nh);
    assert_int_equal(store_hop_lease_lane(d, "w", time_now_ms(), 60000, 5,
                                          &from42, &h, &nh, &err), 0);
    assert_int_equal(nh, 1);
    store_hops_free(h, nh);
    assert_int_equal(store_setting_get(d, "k", &val, &err), 0);
    assert_string_equal(val, "v\xc3\xa9");
    free(val);
    assert_int_equal(store_csecret_get(d, "c", "n", &blob, &len, NULL, &err),
                     1);
    assert_int_equal(len, sizeof(BLOB));
    assert_memory_equal(blob, BLOB, len);
    free(blob);
    assert_int_equal(audit_verify(d, v, &ar, &err), 0);
    assert_int_equal(ar.entries, 2);
    struct store_backup_row row = { .started_at = 3, .finished_at = 4,
                                    .ok = 1, .kind = "master-key" };
    assert_int_equal(store_backup_record(d, &row, &err), 0);
    struct store_backup_item *items;
    size_t n;
    assert_int_equal(store_backup_list(d, 10, &items, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(items[0].id > items[1].id);
    store_backup_items_free(items, n);
    assert_int_equal(store_backup_target_empty(dst, &err), -1);
    assert_non_null(strstr(err.msg, "already holds Wharf data"));
    assert_int_equal(store_backup_load(copy, dst, &err), -1);
}

static void test_r20_pg_export_and_load_round_trip(void **state)
{
    struct fx *f = *state;
    char src[300], dst[300], sname[64], dname[64], copy[400], id[ID_LEN + 1];
    struct error err = {0};
    struct store_backup_counts c;
    test_pg_fresh(src, sizeof(src), sname);
    test_pg_fresh(dst, sizeof(dst), dname);
    struct store *s = store_open(src, &err);
    assert_non_null(s);
    pg_fill(s, f->v, id);
    store_close(s);
    snprintf(copy, sizeof(copy), "%s/copy.db", f->dir);
    if (store_backup_copy(src, copy, &c, &err) != 0)
        fail_msg("export: %s", err.msg);
    assert_int_equal(c.messages, 1);
    assert_int_equal(c.payloads, 1);
    assert_int_equal(c.schema_version, STORE_SCHEMA_VERSION);
    assert_int_equal(c.audit_seq, 2);
    assert_int_equal(strlen(c.audit_hash), 64);
    assert_int_equal(store_backup_check(copy, &err), 0);
    assert_int_equal(store_backup_target_empty(dst, &err), 0);
    if (store_backup_load(copy, dst, &err) != 0)
        fail_msg("load: %s", err.msg);
    struct store *d = store_open(dst, &err);
    assert_non_null(d);
    pg_check_loaded(d, f->v, id, copy, dst);
    store_close(d);
    test_pg_drop(sname);
    test_pg_drop(dname);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r20_container_round_trip),
        cmocka_unit_test(test_r20_container_final_segment_exactly_full),
        cmocka_unit_test(test_r20_container_tampering_refused),
        cmocka_unit_test(test_r20_container_bad_records_refused),
        cmocka_unit_test(test_r20_entry_names),
        cmocka_unit_test(test_r20_header_json),
        cmocka_unit_test_setup_teardown(test_r20_keyblock_for_a_certificate,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_r20_snapshot_holds_only_what_was_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_r20_backups_record_shape, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_r20_pg_export_and_load_round_trip, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
