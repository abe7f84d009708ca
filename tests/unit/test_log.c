/*
 * test_log.c - the diagnostics log (R5) and its redaction (R6): level
 * filtering with per-connector overrides, the line format, rotation without
 * lost or split lines (also under threads), escaping, and log_redact() on
 * every credential shape it promises to mask, on plain text it must leave
 * alone, and on hostile input (linear time, never past the NUL).
 */
#include "testutil.h"

#include "util/fsx.h"
#include "util/id.h"
#include "util/log.h"

#include <pthread.h>
#include <regex.h>
#include <sys/stat.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>

/* ---- helpers ---- */

struct logdir {
    char dir[256];
    char logs[300];
};

static void logdir_open(struct logdir *d, enum log_level level)
{
    test_tmpdir(d->dir, sizeof(d->dir));
    snprintf(d->logs, sizeof(d->logs), "%s/logs", d->dir);
    struct error err = {0};
    log_set_rotation((size_t)10 * 1024 * 1024, 5);
    assert_int_equal(log_open(d->logs, level, false, &err), 0);
}

static void logdir_close(struct logdir *d)
{
    log_close();
    log_set_rotation((size_t)10 * 1024 * 1024, 5);
    test_rmtree(d->dir);
}

/* The whole of DIR/NAME (NULL when it does not exist). Caller frees. */
static char *slurp(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *buf = NULL;
    size_t len = 0;
    struct error err = {0};
    if (fsx_read_all(path, (size_t)64 * 1024 * 1024, &buf, &len, &err) != 0)
        return NULL;
    return buf;
}

static char *slurp_log(const struct logdir *d)
{
    char *s = slurp(d->logs, "wharf.log");
    assert_non_null(s);
    return s;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static bool file_exists(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* Redact a heap copy of exactly strlen+1 bytes (ASan sees any overread)
 * and compare with the expectation. */
static void expect_redact(const char *in, const char *want)
{
    size_t n = strlen(in);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, in, n + 1);
    log_redact(s);
    if (strcmp(s, want) != 0)
        fail_msg("redact(\"%s\")\n   got \"%s\"\n  want \"%s\"", in, s, want);
    assert_true(strlen(s) <= n);
    free(s);
}

/* ---- R5: levels ---- */

static void test_r05_level_names(void **state)
{
    (void)state;
    enum log_level l;
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("warning", &l), 0);
    assert_int_equal(l, LOG_WARNING);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARNING);
    assert_int_equal(log_level_parse("INFO", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_level_parse("trace", &l), 0);
    assert_int_equal(l, LOG_TRACE);
    assert_int_equal(log_level_parse("verbose", &l), -1);
    assert_int_equal(log_level_parse("", &l), -1);
    assert_int_equal(log_level_parse(NULL, &l), -1);
    assert_string_equal(log_level_name(LOG_WARNING), "warning");
    assert_string_equal(log_level_name(LOG_TRACE), "trace");
}

static void test_r05_levels_filter(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    assert_int_equal(log_get_level(), LOG_INFO);

    log_write(LOG_DEBUG, -1, NULL, NULL, "hidden-global-debug");
    log_write(LOG_INFO, -1, NULL, NULL, "shown-global-info");
    log_write(LOG_ERROR, -1, NULL, NULL, "shown-global-error");
    /* a connector at trace sees its debug and trace lines */
    log_write(LOG_TRACE, LOG_TRACE, "chatty", NULL, "shown-conn-trace");
    log_write(LOG_DEBUG, LOG_TRACE, "chatty", NULL, "shown-conn-debug");
    /* a connector at error hides its info and warnings */
    log_write(LOG_INFO, LOG_ERROR, "quiet", NULL, "hidden-conn-info");
    log_write(LOG_WARNING, LOG_ERROR, "quiet", NULL, "hidden-conn-warn");
    log_write(LOG_ERROR, LOG_ERROR, "quiet", NULL, "shown-conn-error");
    log_set_level(LOG_WARNING);
    log_info("hidden-after-set-level");
    log_warn("shown-after-set-level");

    assert_true(log_enabled(LOG_ERROR, -1));
    assert_false(log_enabled(LOG_INFO, -1));
    assert_true(log_enabled(LOG_TRACE, LOG_TRACE));
    assert_false(log_enabled(LOG_WARNING, LOG_ERROR));

    char *s = slurp_log(&d);
    assert_null(strstr(s, "hidden-"));
    const char *shown[] = {
        "shown-global-info", "shown-global-error", "shown-conn-trace",
        "shown-conn-debug", "shown-conn-error", "shown-after-set-level",
    };
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
        assert_non_null(strstr(s, shown[i]));
    assert_int_equal(count_lines(s), 6);
    free(s);
    logdir_close(&d);
}

/* ---- R5: line format ---- */

static int64_t parse_iso_ms(const char *ts)
{
    struct tm tm = {0};
    int ms = 0;
    assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year,
                            &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                            &tm.tm_sec, &ms), 7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void test_r05_line_format(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_DEBUG);
    char id[ID_LEN + 1];
    id_new(id);
    int64_t before = time_now_ms();
    log_write(LOG_WARNING, -1, "inbox", id, "picked up %s (%d bytes)",
              "a.edi", 1234);
    log_info("plain line");
    log_write(LOG_DEBUG, -1, NULL, id, "only a message id");
    int64_t after = time_now_ms();

    char *s = slurp_log(&d);
    assert_int_equal(count_lines(s), 3);
    regex_t re;
    assert_int_equal(regcomp(&re,
        "^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z) "
        "(ERROR|WARN |INFO |DEBUG|TRACE) (conn=([^ ]+) )?(msg=([^ ]+) )?(.*)$",
        REG_EXTENDED | REG_NEWLINE), 0);

    char *line = s;
    struct { const char *level, *conn, *msg, *text; } want[3] = {
        { "WARN ", "inbox", id, "picked up a.edi (1234 bytes)" },
        { "INFO ", NULL, NULL, "plain line" },
        { "DEBUG", NULL, id, "only a message id" },
    };
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        regmatch_t m[8];
        if (regexec(&re, line, 8, m, 0) != 0)
            fail_msg("line does not parse: %s", line);
        char field[256];
#define FIELD(k) (snprintf(field, sizeof(field), "%.*s", \
                  (int)(m[k].rm_eo - m[k].rm_so), line + m[k].rm_so), field)
        int64_t t = parse_iso_ms(FIELD(1));
        assert_true(t >= before - 1 && t <= after + 1);
        assert_string_equal(FIELD(2), want[i].level);
        if (want[i].conn)
            assert_string_equal(FIELD(4), want[i].conn);
        else
            assert_int_equal(m[4].rm_so, -1);
        if (want[i].msg)
            assert_string_equal(FIELD(6), want[i].msg);
        else
            assert_int_equal(m[6].rm_so, -1);
        assert_string_equal(FIELD(7), want[i].text);
#undef FIELD
        line = nl + 1;
    }
    regfree(&re);
    free(s);

    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/wharf.log", d.logs);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(d.logs, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    logdir_close(&d);
}

static void test_r05_newline_escaped(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    log_info("first\nINFO  forged line\r\ttab\x01 bell\x7f end");
    log_write(LOG_INFO, -1, "evil\nconn", NULL, "conn name with newline");
    char *s = slurp_log(&d);
    assert_int_equal(count_lines(s), 2);
    assert_non_null(strstr(s,
        "first\\nINFO  forged line\\r\\ttab\\x01 bell\\x7f end\n"));
    assert_non_null(strstr(s, "conn=evil\\nconn "));
    free(s);
    logdir_close(&d);
}

static void test_r05_long_text_cut(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    size_t n = 20000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    log_info("start %s", big);
    memset(big, '\n', n);               /* escaping makes it 2x longer */
    log_info("%s", big);
    free(big);
    char *s = slurp_log(&d);
    assert_int_equal(count_lines(s), 2);
    char *nl = strchr(s, '\n');
    assert_true(nl - s < 9000);
    assert_memory_equal(nl - 3, "...", 3);
    assert_true(strlen(nl + 1) < 9000);
    assert_memory_equal(s + strlen(s) - 4, "...\n", 4);
    free(s);
    logdir_close(&d);
}

static void test_r05_errno_preserved(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    log_set_rotation(1, 3);     /* rotating renames missing files: ENOENT */
    log_info("first");
    errno = ENOSPC;
    log_info("something failed");
    assert_int_equal(errno, ENOSPC);
    assert_true(file_exists(d.logs, "wharf.log.1"));
    logdir_close(&d);
}

/* ---- R5: rotation ---- */

#define ROT_MAX 2000

/* Each line must look like "... line T:N pad" with nothing cut. Appends
 * the N of thread T to seen (count per index). */
static void check_rotated_file(const char *dir, const char *name,
                               unsigned *seen, int nthreads, int nlines,
                               int *last)
{
    char *s = slurp(dir, name);
    if (s == NULL)
        return;
    assert_true(strlen(s) <= ROT_MAX);
    for (char *line = s, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);    /* no half line at the end of a file */
        *nl = '\0';
        int t, i, end = 0;
        char *p = strstr(line, " line ");
        assert_non_null(p);
        assert_int_equal(sscanf(p, " line %d:%d padding-to-make-it-longer%n",
                                &t, &i, &end), 2);
        assert_true(end > 0 && p[end] == '\0');
        assert_true(t >= 0 && t < nthreads && i >= 0 && i < nlines);
        if (nthreads == 1) {    /* one writer: files hold a run in order */
            assert_int_equal(i, *last + 1);
            *last = i;
        }
        seen[t * nlines + i]++;
    }
    free(s);
}

/* Walk wharf.log.keep ... wharf.log.1, wharf.log (oldest first). */
static void check_rotated_dir(const char *dir, int keep, unsigned *seen,
                              int nthreads, int nlines, int first)
{
    int last = first - 1;
    char name[64];
    for (int k = keep; k >= 0; k--) {
        if (k == 0)
            snprintf(name, sizeof(name), "wharf.log");
        else
            snprintf(name, sizeof(name), "wharf.log.%d", k);
        check_rotated_file(dir, name, seen, nthreads, nlines, &last);
    }
    if (nthreads == 1)
        assert_int_equal(last, nlines - 1);
}

static void test_r05_rotation(void **state)
{
    (void)state;
    enum { N = 400 };
    unsigned seen[N];

    /* Room for everything: every line is somewhere, exactly once. */
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    log_set_rotation(ROT_MAX, 100);
    for (int i = 0; i < N; i++)
        log_info("line 0:%d padding-to-make-it-longer", i);
    assert_true(file_exists(d.logs, "wharf.log.1"));
    assert_true(file_exists(d.logs, "wharf.log.5"));
    memset(seen, 0, sizeof(seen));
    check_rotated_dir(d.logs, 100, seen, 1, N, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    logdir_close(&d);

    /* keep = 3: at most 3 old files; what is left is the newest run. */
    logdir_open(&d, LOG_INFO);
    log_set_rotation(ROT_MAX, 3);
    for (int i = 0; i < N; i++)
        log_info("line 0:%d padding-to-make-it-longer", i);
    assert_true(file_exists(d.logs, "wharf.log.3"));
    assert_false(file_exists(d.logs, "wharf.log.4"));
    memset(seen, 0, sizeof(seen));
    char *old = slurp(d.logs, "wharf.log.3");  /* where the survivors start */
    assert_non_null(old);
    char *p = strstr(old, " line 0:");
    assert_non_null(p);
    int first = (int)strtol(p + 8, NULL, 10);
    free(old);
    assert_true(first > 0);
    check_rotated_dir(d.logs, 3, seen, 1, N, first);
    logdir_close(&d);

    /* keep = 0: the file is simply started afresh. */
    logdir_open(&d, LOG_INFO);
    log_set_rotation(ROT_MAX, 0);
    for (int i = 0; i < N; i++)
        log_info("line 0:%d padding-to-make-it-longer", i);
    assert_false(file_exists(d.logs, "wharf.log.1"));
    char *s = slurp_log(&d);
    assert_true(strlen(s) <= ROT_MAX);
    assert_non_null(strstr(s, "line 0:399 padding"));
    free(s);
    logdir_close(&d);
}

enum { THREADS = 4, PER_THREAD = 300 };

static void *rotation_writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++)
        log_write(LOG_INFO, -1, "conn", NULL,
                  "line %d:%d padding-to-make-it-longer", t, i);
    return NULL;
}

static void test_r05_rotation_threads(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    log_set_rotation(ROT_MAX, 200);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, rotation_writer,
                                        (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    static unsigned seen[THREADS * PER_THREAD];
    memset(seen, 0, sizeof(seen));
    check_rotated_dir(d.logs, 200, seen, THREADS, PER_THREAD, 0);
    for (int i = 0; i < THREADS * PER_THREAD; i++)
        assert_int_equal(seen[i], 1);
    logdir_close(&d);
}

/* ---- R6: redaction ---- */

static void test_r06_redact_url_password(void **state)
{
    (void)state;
    expect_redact("connect to https://alice:s3cr3t-pw@host.example:443/as2 now",
                  "connect to https://alice:***@host.example:443/as2 now");
    expect_redact("sftp://bob:p@ss@w0rd@sftp.example/in",
                  "sftp://bob:***@sftp.example/in");
    expect_redact("http://u:ab@h/", "http://u:**@h/");
    expect_redact("http://u:@h/", "http://u:@h/");
    expect_redact("proxy=http://user:pw12345@proxy:3128",
                  "proxy=http://user:***@proxy:3128");
    expect_redact("\"url\":\"https://x:yyyy@z\"",
                  "\"url\":\"https://x:***@z\"");
    expect_redact("a://b:c@d e://f:gggg@h", "a://b:*@d e://f:***@h");
    /* no password: untouched */
    expect_redact("https://host.example:8443/p?x=1&y=a@b",
                  "https://host.example:8443/p?x=1&y=a@b");
    expect_redact("sftp://user@host:22/", "sftp://user@host:22/");
    expect_redact("https://", "https://");
    expect_redact("://:@", "://:@");
}

static void test_r06_redact_authorization_header(void **state)
{
    (void)state;
    expect_redact("Authorization: Bearer abc.def.ghi",
                  "Authorization: Bearer ***");
    expect_redact("POST /as2 HTTP/1.1\r\nauthorization: Basic dXNlcjpwYXNz\r\n"
                  "Host: x\r\n",
                  "POST /as2 HTTP/1.1\r\nauthorization: Basic ***\r\n"
                  "Host: x\r\n");
    expect_redact("Proxy-Authorization: Basic Zm9vOmJhcg==\nVia: 1.1 p",
                  "Proxy-Authorization: Basic ***\nVia: 1.1 p");
    expect_redact("AUTHORIZATION: rawtoken123", "AUTHORIZATION: ***");
    expect_redact("Authorization: Digest username=\"a\", response=\"bb\"",
                  "Authorization: Digest ***");
    expect_redact("Authorization:Bearer x", "Authorization:Bearer *");
    expect_redact("Cookie: sid=1234; theme=dark", "Cookie: ***");
    expect_redact("Set-Cookie: session=abc; Path=/; HttpOnly\nnext line",
                  "Set-Cookie: ***\nnext line");
    expect_redact("{\"Authorization\":\"Bearer zzz\"}",
                  "{\"Authorization\":\"***\"}");
    expect_redact("Authorization: ", "Authorization: ");
}

static void test_r06_redact_key_value(void **state)
{
    (void)state;
    expect_redact("password=hunter22 user=bob", "password=*** user=bob");
    expect_redact("login user=bob passwd=x", "login user=bob passwd=*");
    expect_redact("{\"client_secret\":\"abc123\",\"user\":\"bob\"}",
                  "{\"client_secret\":\"***\",\"user\":\"bob\"}");
    expect_redact("{\"password\": \"p\\\"q r\", \"n\": 1}",
                  "{\"password\": \"***\", \"n\": 1}");
    expect_redact("{\\\"access_token\\\":\\\"zzzz\\\"}",
                  "{\\\"access_token\\\":\\\"***\\\"}");
    expect_redact("api_key: XYZ123", "api_key: ***");
    expect_redact("X-Api-Key: k1k2k3\r\nAccept: */*",
                  "X-Api-Key: ***\r\nAccept: */*");
    expect_redact("grant_type=refresh_token&refresh_token=aaa&scope=read",
                  "grant_type=refresh_token&refresh_token=***&scope=read");
    expect_redact("master_key = 00112233", "master_key = ***");
    expect_redact("SESSION=ab", "SESSION=**");
    expect_redact("passwd='x y z' ok", "passwd='***' ok");
    expect_redact("--password=abc --user=x", "--password=*** --user=x");
    expect_redact("oauth.clientSecret: s", "oauth.clientSecret: *");
    expect_redact("private_key=MIIEvQ", "private_key=***");
    expect_redact("key=abcdef", "key=***");
    expect_redact("ApiKey=abcdef", "ApiKey=***");
    expect_redact("Passphrase: open sesame\nnext", "Passphrase: ***\nnext");
    expect_redact("cookie=abc def", "cookie=*** def");
    expect_redact("token:abc def", "token:*** def");
    expect_redact("token=", "token=");
    /* a masked value that turns out to be a key: its value goes too */
    expect_redact("Cookie:  \"token\":\"abcdef\" x",
                  "Cookie:  \"***\":\"***\" x");
    expect_redact("password= \"token\"=\"abcdef\" x",
                  "password= \"***\"=\"***\" x");
    expect_redact("api_key= Authorization: Bearer abcdef",
                  "api_key= ***: Bearer ***");
    expect_redact("key= password= abcdef next", "key= ***= *** next");
    expect_redact("token=YWJjZA== next", "token=*** next");
    expect_redact("token=\"unterminated secret\nnext",
                  "token=\"***\nnext");
    expect_redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n"
                  "-----END PRIVATE KEY-----\n",
                  "-----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----\n");
    expect_redact("-----BEGIN RSA PRIVATE KEY-----\nMIIE",
                  "-----BEGIN RSA PRIVATE KEY-----***");
    static const char cert[] =
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    expect_redact(cert, cert);
}

static void test_r06_redact_leaves_plain_text(void **state)
{
    (void)state;
    const char *plain[] = {
        "",
        "retrying in 5 s",
        "picked up a.edi (1234 bytes) from /srv/in; next poll in 30 s",
        "connecting to https://partner.example:4080/as2 as AS2-From=WHARF",
        "user=bob ratio=0.5 attempt=3/5 state=queued",
        "time: 12:30:01, elapsed=00:00:02",
        "key rotation finished for 3 files",
        "received MDN: processed; MIC sha256 ok",
        "session 4 closed after 30 s",
        "token bucket empty, waiting",
        "monkey=banana keystore=/data/keystore",
        "a=b=c :: == :/ :// @@ \"\" ''",
        "message 0193a7b2-7c1d-7e3f-8a9b-0c1d2e3f4a5b delivered to conn=out",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        expect_redact(plain[i], plain[i]);
}

/* Random and adversarial input: never longer, never past the NUL (ASan),
 * and linear time on large pathological strings. */
static void test_r06_redact_fuzz_safety(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ab:/@=\"'\\ \n\r-&tokenpasswordAuthorizationCookie_key"
        "-----BEGIN PRIVATE KEY";
    const size_t na = sizeof(alphabet) - 1;
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand_r(&seed) % 64);
        char *s = malloc(n + 1);
        assert_non_null(s);
        for (size_t i = 0; i < n; i++)
            s[i] = (round & 1) ? (char)(rand_r(&seed) % 255 + 1)
                               : alphabet[(size_t)rand_r(&seed) % na];
        s[n] = '\0';
        log_redact(s);
        assert_true(strlen(s) <= n);
        free(s);
    }
    static const char *patterns[] = {
        "a", "password=", "password ", "://", "://a:", "-----BEGIN ",
        "\"token\":\"", "\\", "Authorization:", "x:", "-----BEGIN PRIVATE KEY",
    };
    size_t big = (size_t)4 << 20;
    char *s = malloc(big + 1);
    assert_non_null(s);
    for (size_t k = 0; k < sizeof(patterns) / sizeof(patterns[0]); k++) {
        size_t m = strlen(patterns[k]), i = 0;
        for (; i + m <= big; i += m)
            memcpy(s + i, patterns[k], m);
        s[i] = '\0';
        int64_t t0 = time_mono_ms();
        log_redact(s);
        int64_t dt = time_mono_ms() - t0;
        /* A liveness bound, not a speed test (bench/ measures speed): a
         * linear pass takes a few seconds even under ThreadSanitizer on a
         * loaded machine; a quadratic one would take hours. */
        if (dt > 60000)
            fail_msg("redact of 4 MiB of \"%s\" took %lld ms: not linear?",
                     patterns[k], (long long)dt);
        assert_true(strlen(s) <= i);
    }
    free(s);
    log_redact(NULL);
}

/* Known secrets in every redacted shape, logged at trace with connector
 * and message id, must not appear anywhere in the log file. */
static void test_r06_no_secret_in_log_file(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_TRACE);
    char id[ID_LEN + 1];
    id_new(id);
    static const char *secrets[] = {
        "Sekr1t-UrlPw", "QmFzaWMtU2VrcmV0", "Bearer-Tok-9f8e",
        "cookie-val-77aa",
        "kv-pass-5512", "json-secret-0c0c", "json-esc-tok-aa11", "hdr-key-9911",
        "query-tok-1234", "yaml-pw-8765", "pem-body-MIIEvQ", "cut-url-pw-4321",
        "proxy-auth-ZZ99",
    };
    log_write(LOG_TRACE, LOG_TRACE, "out", id, "GET https://bob:%s@h.example/x",
              secrets[0]);
    log_write(LOG_TRACE, -1, "out", id,
              "> POST /as2 HTTP/1.1\r\n> Authorization: Basic %s\r\n"
              "> Proxy-Authorization: Basic %s\r\n> Host: h\r\n",
              secrets[1], secrets[12]);
    log_trace("authorization: Bearer %s", secrets[2]);
    log_trace("< Set-Cookie: sid=%s; Path=/", secrets[3]);
    log_trace("login password=%s user=bob", secrets[4]);
    log_trace("token response {\"client_secret\": \"%s\", \"x\": 1}",
              secrets[5]);
    log_trace("body \"{\\\"access_token\\\":\\\"%s\\\"}\"", secrets[6]);
    log_trace("X-API-Key: %s", secrets[7]);
    log_trace("GET /cb?state=1&id_token=%s&x=2", secrets[8]);
    log_trace("config:\n  password: %s\n  user: bob", secrets[9]);
    log_trace("key file:\n-----BEGIN PRIVATE KEY-----\n%s\n"
              "-----END PRIVATE KEY-----", secrets[10]);
    /* A URL straddling the 8 KiB cut must not leave half a password. */
    char pad[8200];
    memset(pad, 'p', sizeof(pad));
    pad[8170] = '\0';  /* the cut (at 8188) falls inside the password */
    log_trace("%s https://u:%s@host/", pad, secrets[11]);

    char *s = slurp_log(&d);
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (strstr(s, secrets[i]) != NULL)
            fail_msg("secret %s found in the log file", secrets[i]);
        char part[8];   /* not even a prefix of it */
        snprintf(part, sizeof(part), "%s", secrets[i]);
        if (strstr(s, part) != NULL)
            fail_msg("part of secret %s found in the log file", secrets[i]);
    }
    /* and the lines are there, with their context */
    assert_non_null(strstr(s, "https://bob:***@h.example/x"));
    assert_non_null(strstr(s, "Authorization: Basic ***\\r\\n"));
    assert_non_null(strstr(s, "user=bob"));
    assert_int_equal(count_lines(s), 12);
    free(s);
    logdir_close(&d);
}

/* A repeating condition: one line, the rest counted; a summary once the
 * interval passed; a "recovered" line with the count; an unknown key
 * recovers silently; another key is independent. */
static void test_r05_repeat_logged_once_then_summarized(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    log_set_repeat_interval(3600 * 1000);
    for (int i = 0; i < 50; i++)
        log_repeat(LOG_WARNING, -1, "inbox", "poll:inbox",
                   "poll failed: try %d", i);
    log_repeat(LOG_WARNING, -1, "other", "poll:other", "poll failed: x");
    assert_int_equal(log_recovered(LOG_INFO, -1, "inbox", "poll:inbox",
                                   "poll works again"), 1);
    assert_int_equal(log_recovered(LOG_INFO, -1, "inbox", "poll:inbox",
                                   "poll works again"), 0);
    assert_int_equal(log_recovered(LOG_INFO, -1, "x", "poll:never",
                                   "poll works again"), 0);
    char *s = slurp_log(&d);
    assert_int_equal(count_lines(s), 3);
    assert_non_null(strstr(s, "WARN  conn=inbox poll failed: try 0 (repeats "
                              "are counted and summarized every 3600 s)\n"));
    assert_null(strstr(s, "try 1"));
    assert_non_null(strstr(s, "conn=other poll failed: x (repeats"));
    assert_non_null(strstr(s, "INFO  conn=inbox poll works again after 50 "
                              "failures in 0 s\n"));
    free(s);

    /* interval 0: every repeat is written, as a summary of one */
    log_set_repeat_interval(0);
    log_repeat(LOG_WARNING, -1, NULL, "k", "down");
    log_repeat(LOG_WARNING, -1, NULL, "k", "down again");
    log_recovered(LOG_INFO, -1, NULL, "k", "up");
    s = slurp_log(&d);
    assert_non_null(strstr(s, "down again (repeated 1 times in the last 0 "
                              "s)\n"));
    assert_non_null(strstr(s, "up after 2 failures in 0 s\n"));
    assert_int_equal(count_lines(s), 6);
    free(s);
    log_recovered(LOG_INFO, -1, NULL, "poll:other", "up");
    log_set_repeat_interval(60000);
    logdir_close(&d);
}

/* More keys than the table holds: every line is still written (nothing
 * is lost), and tracked keys keep working. */
static void test_r05_repeat_table_full_writes_every_line(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    log_set_repeat_interval(3600 * 1000);
    char key[32];
    for (int i = 0; i < LOG_REPEAT_KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        log_repeat(LOG_WARNING, -1, NULL, key, "down %d", i);
    }
    log_repeat(LOG_WARNING, -1, NULL, "one-too-many", "overflow");
    log_repeat(LOG_WARNING, -1, NULL, "one-too-many", "overflow");
    char *s = slurp_log(&d);
    assert_int_equal(count_lines(s), LOG_REPEAT_KEYS + 2);
    free(s);
    for (int i = 0; i < LOG_REPEAT_KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(log_recovered(LOG_INFO, -1, NULL, key, "up"), 1);
    }
    log_set_repeat_interval(60000);
    logdir_close(&d);
}

/* logrotate's way: rename wharf.log, then reopen: the next line goes to
 * a new wharf.log, none to the renamed one. */
static void test_r05_reopen_after_rename(void **state)
{
    (void)state;
    struct logdir d;
    logdir_open(&d, LOG_INFO);
    log_info("before the rename");
    char from[512], to[512];
    snprintf(from, sizeof(from), "%s/wharf.log", d.logs);
    snprintf(to, sizeof(to), "%s/wharf.log.old", d.logs);
    assert_int_equal(rename(from, to), 0);
    log_info("still to the old file");
    struct error err = {0};
    assert_int_equal(log_reopen(&err), 0);
    log_info("after the reopen");
    char *old = slurp(d.logs, "wharf.log.old");
    char *cur = slurp_log(&d);
    assert_non_null(old);
    assert_non_null(strstr(old, "before the rename"));
    assert_non_null(strstr(old, "still to the old file"));
    assert_null(strstr(old, "after the reopen"));
    assert_int_equal(count_lines(cur), 1);
    assert_non_null(strstr(cur, "after the reopen"));
    free(old);
    free(cur);
    log_close();
    assert_int_equal(log_reopen(&err), -1);
    logdir_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r05_level_names),
        cmocka_unit_test(test_r05_levels_filter),
        cmocka_unit_test(test_r05_line_format),
        cmocka_unit_test(test_r05_newline_escaped),
        cmocka_unit_test(test_r05_long_text_cut),
        cmocka_unit_test(test_r05_errno_preserved),
        cmocka_unit_test(test_r05_rotation),
        cmocka_unit_test(test_r05_rotation_threads),
        cmocka_unit_test(test_r05_repeat_logged_once_then_summarized),
        cmocka_unit_test(test_r05_repeat_table_full_writes_every_line),
        cmocka_unit_test(test_r05_reopen_after_rename),
        cmocka_unit_test(test_r06_redact_url_password),
        cmocka_unit_test(test_r06_redact_authorization_header),
        cmocka_unit_test(test_r06_redact_key_value),
        cmocka_unit_test(test_r06_redact_leaves_plain_text),
        cmocka_unit_test(test_r06_redact_fuzz_safety),
        cmocka_unit_test(test_r06_no_secret_in_log_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
