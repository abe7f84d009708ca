/*
 * test_util.c - the utility layer below everything: struct secret and
 * secret files, durable file operations (atomic replace, batched syncs,
 * mkdir -p, bounded reads, dirname), group syncs, the fan-out pool, UUIDv7
 * ids and the time helpers.
 */
#include "testutil.h"

#include "util/fanout.h"
#include "util/fault.h"
#include "util/fdio.h"
#include "util/fsx.h"
#include "util/id.h"
#include "util/secret.h"
#include "util/strbuf.h"
#include "util/syncgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

static void write_file(const char *path, const char *data, size_t len,
                       mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int count_entries_containing(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* ---- secret ---- */

static void test_secret_round_trip(void **state)
{
    (void)state;
    struct secret *s = secret_from("hunter2", 7);
    assert_non_null(s);
    assert_int_equal(secret_len(s), 7);
    assert_memory_equal(secret_data(s), "hunter2", 7);
    secret_free(s);

    struct secret *z = secret_new(32);
    assert_non_null(z);
    assert_int_equal(secret_len(z), 32);
    static const unsigned char zeros[32];
    assert_memory_equal(secret_data(z), zeros, 32);
    memset(secret_data_mut(z), 0xA5, 32);
    assert_int_equal(secret_data(z)[31], 0xA5);
    secret_free(z);

    struct secret *e = secret_from("", 0);
    assert_non_null(e);
    assert_int_equal(secret_len(e), 0);
    secret_free(e);
    secret_free(NULL);
    assert_int_equal(secret_len(NULL), 0);
    assert_null(secret_data(NULL));
}

static void test_secret_equal(void **state)
{
    (void)state;
    struct secret *a = secret_from("correct horse", 13);
    struct secret *b = secret_from("correct horse", 13);
    struct secret *c = secret_from("correct horsf", 13);
    struct secret *d = secret_from("correct hors", 12);
    assert_int_equal(secret_equal(a, b), 1);
    assert_int_equal(secret_equal(a, c), 0);
    assert_int_equal(secret_equal(a, d), 0);
    assert_int_equal(secret_equal(a, NULL), 0);
    secret_free(a);
    secret_free(b);
    secret_free(c);
    secret_free(d);
}

static void test_secret_from_file_trims_newline(void **state)
{
    (void)state;
    char dir[256], path[300];
    test_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/pw", dir);
    struct { const char *content, *want; } cases[] = {
        { "s3cret\n", "s3cret" },
        { "s3cret\r\n", "s3cret" },
        { "s3cret", "s3cret" },
        { "s3cret\n\n", "s3cret\n" },   /* only one newline goes */
        { "a b\tc\n", "a b\tc" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(path, cases[i].content, strlen(cases[i].content), 0600);
        struct error err = {0};
        struct secret *s = secret_from_file(path, &err);
        assert_non_null(s);
        assert_int_equal(secret_len(s), strlen(cases[i].want));
        assert_memory_equal(secret_data(s), cases[i].want, secret_len(s));
        secret_free(s);
    }
    test_rmtree(dir);
}

/* Issue 9 item 1: a blank secret file is refused (an empty token file
 * made `Authorization: Bearer ` valid), and a FIFO neither hangs nor is
 * read. */
static void test_r04_secret_from_file_refuses_blank_and_fifo(void **state)
{
    (void)state;
    char dir[256], path[300];
    test_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/pw", dir);
    const char *blank[] = { "", "\n", "  \t\r\n", "\n\n" };
    for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
        write_file(path, blank[i], strlen(blank[i]), 0600);
        struct error err = {0};
        assert_null(secret_from_file(path, &err));
        assert_non_null(strstr(err.msg, "empty"));
    }
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    struct error err = {0};
    assert_null(secret_from_file(path, &err));
    assert_non_null(strstr(err.msg, "not a regular file"));
    test_rmtree(dir);
}

static void test_secret_from_file_refuses_shared_mode(void **state)
{
    (void)state;
    char dir[256], path[300];
    test_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/keystore", dir);
    write_file(path, "k\n", 2, 0644);
    struct error err = {0};
    assert_null(secret_from_file(path, &err));
    assert_non_null(strstr(err.msg, "mode 0644"));
    assert_non_null(strstr(err.msg, "readable by group or others"));
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_non_null(strstr(err.msg, path));

    assert_int_equal(chmod(path, 0620), 0);
    assert_null(secret_from_file(path, &err));
    assert_non_null(strstr(err.msg, "mode 0620"));

    assert_int_equal(chmod(path, 0400), 0);
    struct secret *s = secret_from_file(path, &err);
    assert_non_null(s);
    secret_free(s);
    test_rmtree(dir);
}

static void test_secret_from_file_limits(void **state)
{
    (void)state;
    char dir[256], path[300];
    test_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/big", dir);
    size_t n = 64 * 1024 + 1;
    char *big = calloc(1, n);
    assert_non_null(big);
    write_file(path, big, n, 0600);
    struct error err = {0};
    assert_null(secret_from_file(path, &err));
    assert_non_null(strstr(err.msg, "larger than"));
    write_file(path, big, n - 1, 0600);   /* exactly 64 KiB is fine */
    struct secret *s = secret_from_file(path, &err);
    assert_non_null(s);
    assert_int_equal(secret_len(s), n - 1);
    secret_free(s);
    free(big);

    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_null(secret_from_file(path, &err));
    assert_non_null(strstr(err.msg, path));
    assert_null(secret_from_file(dir, &err));   /* a directory */
    test_rmtree(dir);
}

/* ---- fsx ---- */

static void test_fsx_write_atomic(void **state)
{
    (void)state;
    char dir[256], path[300];
    test_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/wharf.conf", dir);
    struct error err = {0};

    assert_int_equal(fsx_write_atomic(path, "one\n", 4, 0640, &err), 0);
    char *buf;
    size_t len;
    assert_int_equal(fsx_read_all(path, 100, &buf, &len, &err), 0);
    assert_int_equal(len, 4);
    assert_string_equal(buf, "one\n");
    free(buf);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    ino_t first = st.st_ino;

    /* replace: new content, new mode, a new inode (renamed over) */
    assert_int_equal(fsx_write_atomic(path, "second", 6, 0600, &err), 0);
    assert_int_equal(fsx_read_all(path, 100, &buf, &len, &err), 0);
    assert_string_equal(buf, "second");
    free(buf);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_ino != first);

    assert_int_equal(fsx_write_atomic(path, "", 0, 0600, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(count_entries_containing(dir, ".tmp-"), 0);

    /* failure: the directory does not exist; the error names the path */
    snprintf(path, sizeof(path), "%s/nodir/x", dir);
    assert_int_equal(fsx_write_atomic(path, "x", 1, 0600, &err), -1);
    assert_non_null(strstr(err.msg, path));
    /* failure at rename (target is a non-empty directory): temp is gone */
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char inner[400];
    snprintf(inner, sizeof(inner), "%s/f", path);
    write_file(inner, "x", 1, 0600);
    assert_int_equal(fsx_write_atomic(path, "x", 1, 0600, &err), -1);
    assert_non_null(strstr(err.msg, "rename"));
    assert_int_equal(count_entries_containing(dir, ".tmp-"), 0);
    test_rmtree(dir);
}

static void sync_n(const char *dir, int n)
{
    int fds[32];
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        char path[320];
        snprintf(path, sizeof(path), "%s/f%d", dir, i);
        fds[i] = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fds[i] >= 0);
        assert_int_equal(write(fds[i], "data", 4), 4);
    }
    struct error err = {0};
    if (fsx_sync_fds(fds, (size_t)n, &err) != 0)
        fail_msg("fsx_sync_fds(%d): %s", n, err.msg);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static void test_fsx_sync_fds(void **state)
{
    (void)state;
    char dir[256];
    test_tmpdir(dir, sizeof(dir));
    struct error err = {0};
    assert_int_equal(fsx_sync_fds(NULL, 0, &err), 0);
    sync_n(dir, 3);
    sync_n(dir, 20);
    int bad[10] = { -1, -1, -1, -1, -1, -1, -1, -1, -1, -1 };
    assert_int_equal(fsx_sync_fds(bad, 3, &err), -1);     /* fdatasync */
    assert_int_not_equal(err.code, 0);
    assert_int_equal(fsx_sync_fds(bad, 10, &err), -1);    /* syncfs path */
    assert_int_not_equal(err.code, 0);
    assert_int_equal(fsx_fsync_dir(dir, &err), 0);
    test_rmtree(dir);
}

static void test_fsx_mkdir_p(void **state)
{
    (void)state;
    char dir[256], path[400];
    test_tmpdir(dir, sizeof(dir));
    struct error err = {0};
    snprintf(path, sizeof(path), "%s/a/b//c/", dir);
    assert_int_equal(fsx_mkdir_p(path, 0700, &err), 0);
    assert_int_equal(fsx_mkdir_p(path, 0700, &err), 0);   /* idempotent */
    struct stat st;
    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);

    snprintf(path, sizeof(path), "%s/file", dir);
    write_file(path, "x", 1, 0600);
    snprintf(path, sizeof(path), "%s/file/sub", dir);
    assert_int_equal(fsx_mkdir_p(path, 0700, &err), -1);
    assert_non_null(strstr(err.msg, "/file"));
    assert_int_equal(fsx_mkdir_p("", 0700, &err), -1);
    assert_int_equal(fsx_mkdir_p("/", 0700, &err), 0);
    test_rmtree(dir);
}

static void test_fsx_read_all_max(void **state)
{
    (void)state;
    char dir[256], path[300];
    test_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    char data[100];
    memset(data, 'q', sizeof(data));
    write_file(path, data, sizeof(data), 0600);
    struct error err = {0};
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(fsx_read_all(path, 100, &buf, &len, &err), 0);
    assert_int_equal(len, 100);
    assert_int_equal(buf[100], '\0');
    free(buf);
    assert_int_equal(fsx_read_all(path, 99, &buf, &len, &err), -1);
    assert_null(buf);
    char want[400];
    snprintf(want, sizeof(want), "file %s is larger than 99 bytes", path);
    assert_string_equal(err.msg, want);
    /* a file whose size stat does not know: the bound holds while reading */
    assert_int_equal(fsx_read_all("/proc/self/status", 10, &buf, &len, &err),
                     -1);
    assert_non_null(strstr(err.msg, "larger than 10 bytes"));
    assert_int_equal(fsx_read_all("/proc/self/status", 1 << 20, &buf, &len,
                                  &err), 0);
    assert_true(len > 10 && strlen(buf) == len);
    free(buf);
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(fsx_read_all(path, 10, &buf, &len, &err), -1);
    assert_non_null(strstr(err.msg, path));
    test_rmtree(dir);
}

static void test_fsx_dirname(void **state)
{
    (void)state;
    struct { const char *in, *out; } cases[] = {
        { "a/b", "a" }, { "/a/b/c", "/a/b" }, { "a", "." }, { "/a", "/" },
        { "/", "/" }, { "a/b/", "a" }, { "a//b", "a" }, { "", "." },
        { "//a", "/" }, { "a/", "." }, { "./x", "." }, { "///", "/" },
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(fsx_dirname(cases[i].in, out, sizeof(out)), 0);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("dirname(\"%s\") = \"%s\", want \"%s\"", cases[i].in, out,
                     cases[i].out);
    }
    assert_int_equal(fsx_dirname("abc/def", out, 3), -1);
    assert_int_equal(fsx_dirname("abc/def", out, 4), 0);
    assert_string_equal(out, "abc");
}

/* ---- id and time ---- */

enum { IDS = 10000 };

static void test_id_new_valid_unique_ascending(void **state)
{
    (void)state;
    static char ids[IDS][ID_LEN + 1];
    int64_t before = time_now_ms();
    for (int i = 0; i < IDS; i++) {
        id_new(ids[i]);
        assert_true(id_valid(ids[i]));
        assert_int_equal(ids[i][14], '7');                  /* version */
        assert_non_null(strchr("89ab", ids[i][19]));        /* variant 10 */
        if (i > 0 && strcmp(ids[i - 1], ids[i]) >= 0)
            fail_msg("id %d not ascending: %s then %s", i, ids[i - 1], ids[i]);
    }
    /* the first 48 bits are the creation time in ms */
    char hex[13];
    memcpy(hex, ids[0], 8);
    memcpy(hex + 8, ids[0] + 9, 4);
    hex[12] = '\0';
    int64_t ms = (int64_t)strtoll(hex, NULL, 16);
    assert_true(ms >= before && ms <= time_now_ms() + 1);
}

enum { ID_THREADS = 4, PER_ID_THREAD = 3000 };
static char thread_ids[ID_THREADS * PER_ID_THREAD][ID_LEN + 1];

static void *id_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_ID_THREAD; i++)
        id_new(thread_ids[t * PER_ID_THREAD + i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_id_new_threads_unique(void **state)
{
    (void)state;
    pthread_t th[ID_THREADS];
    for (int t = 0; t < ID_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, id_worker,
                                        (void *)(intptr_t)t), 0);
    for (int t = 0; t < ID_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < ID_THREADS; t++)     /* each thread sees ascending */
        for (int i = 1; i < PER_ID_THREAD; i++)
            assert_true(strcmp(thread_ids[t * PER_ID_THREAD + i - 1],
                               thread_ids[t * PER_ID_THREAD + i]) < 0);
    qsort(thread_ids, ID_THREADS * PER_ID_THREAD, ID_LEN + 1, cmp_id);
    for (int i = 1; i < ID_THREADS * PER_ID_THREAD; i++)
        assert_true(strcmp(thread_ids[i - 1], thread_ids[i]) < 0);
}

static void test_id_valid_rejects_bad_shapes(void **state)
{
    (void)state;
    assert_true(id_valid("0193a7b2-7c1d-7e3f-8a9b-0c1d2e3f4a5b"));
    assert_true(id_valid("00000000-0000-4000-8000-000000000000"));
    const char *bad[] = {
        "",
        "0193a7b2-7c1d-7e3f-8a9b-0c1d2e3f4a5",      /* short */
        "0193a7b2-7c1d-7e3f-8a9b-0c1d2e3f4a5b0",    /* long */
        "0193A7B2-7C1D-7E3F-8A9B-0C1D2E3F4A5B",     /* upper case */
        "0193a7b2x7c1d-7e3f-8a9b-0c1d2e3f4a5b",     /* dash missing */
        "0193a7b-27c1d-7e3f-8a9b-0c1d2e3f4a5b",     /* dash misplaced */
        "0193a7b2-7c1d-7e3f-8a9b-0c1d2e3f4a5g",     /* not hex */
        "0193a7b27c1d7e3f8a9b0c1d2e3f4a5b",         /* no dashes */
        "{0193a7b2-7c1d-7e3f-8a9b-0c1d2e3f4a5}",
        "../../../../etc/passwd-aaaa-bbbb-cccc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (id_valid(bad[i]))
            fail_msg("id_valid accepted \"%s\"", bad[i]);
    assert_false(id_valid(NULL));
}

static void test_time_iso(void **state)
{
    (void)state;
    char out[32];
    time_iso(0, out, sizeof(out));
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    time_iso(1795433503123, out, sizeof(out));
    assert_string_equal(out, "2026-11-23T11:31:43.123Z");
    time_iso(-1, out, sizeof(out));
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    time_iso(951782400007, out, sizeof(out));         /* leap day 2000 */
    assert_string_equal(out, "2000-02-29T00:00:00.007Z");
    time_iso(0, out, 25);                              /* exactly enough */
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    time_iso(0, out, 5);                               /* cut, terminated */
    assert_string_equal(out, "1970");

    int64_t now = time_now_ms();
    assert_true(now > 1700000000000);                  /* after 2023 */
    int64_t m1 = time_mono_ms(), m2 = time_mono_ms();
    assert_true(m2 >= m1 && m1 > 0);
}

/* ---- the kill -9 test hook ---- */

/* In a child with WHARF_FAULT=spec: call fault_point(name) `calls` times,
 * writing one byte to a pipe after each call that returned. Returns the
 * bytes written and the child's wait status. */
static int fault_child(const char *spec, const char *name, int calls,
                       int *status)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        setenv("WHARF_FAULT", spec, 1);
        for (int i = 0; i < calls; i++) {
            fault_point("some.other");
            fault_point(name);
            if (write(p[1], "x", 1) != 1)
                _exit(3);
        }
        _exit(0);
    }
    close(p[1]);
    char buf[64];
    int n = 0;
    ssize_t r;
    while ((r = read(p[0], buf, sizeof(buf))) > 0)
        n += (int)r;
    close(p[0]);
    assert_int_equal(waitpid(pid, status, 0), pid);
    return n;
}


/* fsx_remove_tree undoes a tree without following a link out of it. */
static void test_m2_remove_tree_stays_inside(void **state)
{
    (void)state;
    char top[256];
    test_tmpdir(top, sizeof(top));
    char dir[300], outside[300], path[400];
    snprintf(dir, sizeof(dir), "%s/made", top);
    snprintf(outside, sizeof(outside), "%s/keep", top);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(mkdir(outside, 0700), 0);
    snprintf(path, sizeof(path), "%s/precious", outside);
    write_file(path, "x", 1, 0600);
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/sub/file", dir);
    write_file(path, "y", 1, 0600);
    snprintf(path, sizeof(path), "%s/link", dir);
    assert_int_equal(symlink(outside, path), 0);
    fsx_remove_tree(dir, false);            /* the contents only */
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(lstat(path, &sb), -1);
    fsx_remove_tree(dir, true);
    assert_int_equal(lstat(dir, &sb), -1);
    snprintf(path, sizeof(path), "%s/precious", outside);
    assert_int_equal(stat(path, &sb), 0);    /* behind the link: kept */
    fsx_remove_tree(top, true);
    assert_int_equal(lstat(top, &sb), -1);
}

/* ---- fan-out (util/fanout.h) ---- */

#define FAN_N 300

struct fan {
    int runs[FAN_N];
    int now, most;              /* in flight; the most at once */
    pthread_t who[FAN_N];
};

static void fan_one(void *ctx, size_t i)
{
    struct fan *f = ctx;
    int now = __atomic_add_fetch(&f->now, 1, __ATOMIC_SEQ_CST);
    int most = __atomic_load_n(&f->most, __ATOMIC_SEQ_CST);
    while (now > most && !__atomic_compare_exchange_n(&f->most, &most, now,
                          0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    __atomic_add_fetch(&f->runs[i], 1, __ATOMIC_SEQ_CST);
    f->who[i] = pthread_self();
    usleep(200);
    __atomic_sub_fetch(&f->now, 1, __ATOMIC_SEQ_CST);
}

static void fan_check(const struct fan *f, size_t n, int width)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(f->runs[i], 1);
    for (size_t i = n; i < FAN_N; i++)
        assert_int_equal(f->runs[i], 0);
    assert_true(f->most <= width);
    assert_int_equal(f->now, 0);
}

/* Every index runs exactly once, never more than width at once; the
 * helpers of one call serve the next (no new thread: their keep-alive
 * connections are reused). */
static void test_m4_fanout_runs_each_index_once_and_reuses_its_helpers(
    void **state)
{
    (void)state;
    static struct fan f;
    memset(&f, 0, sizeof(f));
    fanout_run(FAN_N, 5, fan_one, &f);
    fan_check(&f, FAN_N, 5);
    assert_true(f.most >= 2);           /* helpers took part */
    size_t helpers = fanout_helpers();
    assert_true(helpers >= 1 && helpers <= 4);
    memset(&f, 0, sizeof(f));
    fanout_run(FAN_N, 5, fan_one, &f);
    fan_check(&f, FAN_N, 5);
    assert_int_equal(fanout_helpers(), helpers);
    memset(&f, 0, sizeof(f));
    fanout_run(FAN_N, 1, fan_one, &f);  /* width 1: the caller alone */
    fan_check(&f, FAN_N, 1);
    for (size_t i = 0; i < FAN_N; i++)
        assert_true(pthread_equal(f.who[i], pthread_self()));
    memset(&f, 0, sizeof(f));
    fanout_run(1, 8, fan_one, &f);      /* one index: no helper */
    fan_check(&f, 1, 1);
    fanout_run(0, 8, fan_one, &f);
    fan_check(&f, 1, 1);
}

static void *fan_caller(void *arg)
{
    struct fan *f = arg;
    fanout_run(FAN_N / 2, 3, fan_one, f);
    return NULL;
}

/* Calls from several threads at once share the pool: each gets its own
 * indexes once, at most its width at once. */
static void test_m4_fanout_calls_from_several_threads_share_the_pool(
    void **state)
{
    (void)state;
    static struct fan f[4];
    pthread_t t[4];
    memset(f, 0, sizeof(f));
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fan_caller, &f[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        fan_check(&f[i], FAN_N / 2, 3);
    assert_true(fanout_helpers() <= FANOUT_MAX - 1);
}

/* ---- group sync (util/syncgroup.h) ---- */

/* A fake file: its sync counts rounds, and the first round can be made to
 * wait until every thread has taken its ticket, so the sharing of the
 * second round does not depend on timing. */
struct sg_fake {
    struct sync_group *g;
    pthread_mutex_t mu;
    unsigned started, done_start;   /* rounds begun; start no. of the last done */
    unsigned hold_until;            /* first round waits for this many tickets */
    int fail_round;                 /* this round (1-based) fails with EIO */
};

static int sg_fake_sync(void *arg)
{
    struct sg_fake *f = arg;
    pthread_mutex_lock(&f->mu);
    unsigned me = ++f->started;
    pthread_mutex_unlock(&f->mu);
    while (me == 1 && sync_group_tickets(f->g) < f->hold_until)
        usleep(1000);
    pthread_mutex_lock(&f->mu);
    f->done_start = me;
    pthread_mutex_unlock(&f->mu);
    return (int)me == f->fail_round ? EIO : 0;
}

struct sg_caller {
    struct sg_fake *f;
    int rc;
    int covered;        /* a sync begun after the call had finished */
};

static void *sg_call(void *arg)
{
    struct sg_caller *c = arg;
    pthread_mutex_lock(&c->f->mu);
    unsigned before = c->f->started;
    pthread_mutex_unlock(&c->f->mu);
    struct error err = {0};
    c->rc = sync_group_wait(c->f->g, sg_fake_sync, c->f, "fake", &err);
    pthread_mutex_lock(&c->f->mu);
    c->covered = c->f->done_start > before;
    pthread_mutex_unlock(&c->f->mu);
    return NULL;
}

static void sg_run(struct sg_fake *f, struct sg_caller *c, size_t n)
{
    pthread_t t[16];
    for (size_t i = 0; i < n; i++) {
        c[i].f = f;
        assert_int_equal(pthread_create(&t[i], NULL, sg_call, &c[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static void sg_fake_init(struct sg_fake *f, ino_t ino, unsigned hold,
                         int fail_round)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->g = sync_group_of((dev_t)-7, ino);      /* no real file has it */
    assert_non_null(f->g);
    f->hold_until = hold;
    f->fail_round = fail_round;
}

/* Eight threads syncing one file at once: each returns only after a sync
 * that began after its call, and they share two syncs (the first round,
 * then one for the seven that queued behind it), not eight. */
static void test_m2_group_sync_shares_one_sync_among_waiters(void **state)
{
    (void)state;
    struct sg_fake f;
    struct sg_caller c[8];
    memset(c, 0, sizeof(c));
    sg_fake_init(&f, 1, 8, 0);
    assert_ptr_equal(sync_group_of((dev_t)-7, 1), f.g);   /* found again */
    sg_run(&f, c, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_true(c[i].covered);
    }
    assert_int_equal(f.started, 2);
    /* alone, a caller leads its own round */
    struct sg_caller one = { 0 };
    sg_run(&f, &one, 1);
    assert_int_equal(one.rc, 0);
    assert_true(one.covered);
    assert_int_equal(f.started, 3);
}

/* A failed sync fails every caller it covered and every later one (on
 * Linux a later fsync may succeed after the pages were dropped). */
static void test_m2_group_sync_failure_is_sticky(void **state)
{
    (void)state;
    struct sg_fake f;
    struct sg_caller c[4];
    memset(c, 0, sizeof(c));
    sg_fake_init(&f, 2, 0, 2);
    sg_run(&f, c, 1);                   /* round 1 succeeds */
    assert_int_equal(c[0].rc, 0);
    sg_run(&f, c + 1, 1);               /* round 2 fails */
    assert_int_equal(c[1].rc, -1);
    sg_run(&f, c + 2, 2);               /* nothing syncs any more */
    assert_int_equal(c[2].rc, -1);
    assert_int_equal(c[3].rc, -1);
    assert_int_equal(f.started, 2);
}

/* The directory sync of fsx goes through the group of the directory. */
static void test_m2_fsync_dir_goes_through_its_group(void **state)
{
    (void)state;
    char dir[256];
    test_tmpdir(dir, sizeof(dir));
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    struct sync_group *g = sync_group_of(st.st_dev, st.st_ino);
    unsigned long long before = sync_group_tickets(g);
    struct error err = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(fsx_fsync_dir(dir, &err), 0);
    assert_int_equal(sync_group_tickets(g) - before, 3);
    assert_int_equal(rmdir(dir), 0);
}

static void test_r15_fault_point_kills_at_the_named_hit(void **state)
{
    (void)state;
    int status = 0;
    /* the third hit of "rotate.x" is a SIGKILL: two calls returned */
    assert_int_equal(fault_child("rotate.x:3", "rotate.x", 10, &status), 2);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* several points; the second one named matches */
    assert_int_equal(fault_child("a.b:1,rotate.x:5", "rotate.x", 10,
                                 &status), 4);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* other names, a prefix, a bad count or no variable: nothing happens */
    const char *inert[] = { "rotate.y:1", "rotate:1", "rotate.x.z:1",
                            "rotate.x:0", "rotate.x:", "rotate.x:2x", "" };
    for (size_t i = 0; i < sizeof(inert) / sizeof(inert[0]); i++) {
        assert_int_equal(fault_child(inert[i], "rotate.x", 4, &status), 4);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    unsetenv("WHARF_FAULT");
    fault_point("rotate.x");        /* unset: a no-op in this process */
}

/* strbuf: appends of every kind across several growths, an empty take,
 * formatted text longer than the first allocation. */
static void test_fdio_whole_transfers_and_a_short_peer(void **state)
{
    (void)state;
    int sv[2];
    static unsigned char big[200000], back[sizeof(big)];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)(i * 7);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();             /* a writer larger than the buffers */
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fd_send_all(sv[0], big, sizeof(big)) == 0 ? 0 : 1);
    assert_int_equal(fd_read_all(sv[1], back, sizeof(back)), 0);
    assert_memory_equal(back, big, sizeof(big));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(WEXITSTATUS(st), 0);
    /* the peer sends 3 bytes and closes: a read of 4 fails */
    assert_int_equal(fd_send_all(sv[0], "abc", 3), 0);
    close(sv[0]);
    assert_int_equal(fd_read_all(sv[1], back, 4), -1);
    /* sending to a closed peer fails without SIGPIPE */
    assert_int_equal(fd_send_all(sv[1], "x", 1), -1);
    close(sv[1]);
}

static void test_strbuf_grows_and_hands_over(void **state)
{
    (void)state;
    struct strbuf b = {0};
    char *empty = strbuf_take(&b);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);
    for (int i = 0; i < 2000; i++)
        strbuf_addf(&b, "%04d,", i);
    strbuf_str(&b, "end");
    strbuf_add(&b, "!?", 1);
    assert_int_equal(b.len, 2000 * 5 + 4);
    assert_int_equal(strlen(b.p), b.len);
    assert_memory_equal(b.p, "0000,0001,", 10);
    assert_string_equal(b.p + 2000 * 5, "end!");
    char big[9000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    strbuf_addf(&b, "[%s]", big);
    assert_int_equal(b.len, 2000 * 5 + 4 + 9001);
    char *p = strbuf_take(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(p[strlen(p) - 1], ']');
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_round_trip),
        cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_secret_from_file_trims_newline),
        cmocka_unit_test(test_r04_secret_from_file_refuses_blank_and_fifo),
        cmocka_unit_test(test_secret_from_file_refuses_shared_mode),
        cmocka_unit_test(test_secret_from_file_limits),
        cmocka_unit_test(test_fsx_write_atomic),
        cmocka_unit_test(test_fsx_sync_fds),
        cmocka_unit_test(test_fsx_mkdir_p),
        cmocka_unit_test(test_fsx_read_all_max),
        cmocka_unit_test(test_fsx_dirname),
        cmocka_unit_test(test_id_new_valid_unique_ascending),
        cmocka_unit_test(test_id_new_threads_unique),
        cmocka_unit_test(test_id_valid_rejects_bad_shapes),
        cmocka_unit_test(test_time_iso),
        cmocka_unit_test(test_strbuf_grows_and_hands_over),
        cmocka_unit_test(test_fdio_whole_transfers_and_a_short_peer),
        cmocka_unit_test(test_r15_fault_point_kills_at_the_named_hit),
        cmocka_unit_test(test_m2_remove_tree_stays_inside),
        cmocka_unit_test(test_m4_fanout_runs_each_index_once_and_reuses_its_helpers),
        cmocka_unit_test(test_m4_fanout_calls_from_several_threads_share_the_pool),
        cmocka_unit_test(test_m2_group_sync_shares_one_sync_among_waiters),
        cmocka_unit_test(test_m2_group_sync_failure_is_sticky),
        cmocka_unit_test(test_m2_fsync_dir_goes_through_its_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
