/*
 * test_flow.c - what an operator feeds Wharf and what the engine computes
 * from it: the flow document (flow_parse, M1: accepted as the issue shows
 * it, rejected with one precise message naming the problem for every kind
 * of mistake, and nothing half-parsed left behind), wharf.conf (conf_parse,
 * M8: defaults, every key, unknown keys, bad and out-of-range numbers, with
 * line numbers), and the retry schedule (engine_backoff_ms, M2: exponential,
 * jittered within [d/2, d], capped).
 *
 * The file connector's check() looks at real folders, so the fixture makes
 * real temp dirs.
 */
#include "testutil.h"

#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/flow.h"
#include "core/wharf.h"
#include "net/client.h"
#include "util/confine.h"

/* ---- fixture: real folders for receive_dir / send_dir / archive_dir ---------- */

static char ROOT[256], IN[300], OUT[300], ARCH[300], AFILE[300], MISSING[300];
static char DATA[300];

static int dirs_setup(void **state)
{
    (void)state;
    test_tmpdir(ROOT, sizeof(ROOT));
    snprintf(IN, sizeof(IN), "%s/in", ROOT);
    snprintf(OUT, sizeof(OUT), "%s/out", ROOT);
    snprintf(ARCH, sizeof(ARCH), "%s/archive", ROOT);
    snprintf(AFILE, sizeof(AFILE), "%s/plain-file", ROOT);
    snprintf(MISSING, sizeof(MISSING), "%s/no-such-dir", ROOT);
    snprintf(DATA, sizeof(DATA), "%s/data", ROOT);
    if (mkdir(IN, 0700) != 0 || mkdir(OUT, 0700) != 0 ||
        mkdir(ARCH, 0700) != 0 || mkdir(DATA, 0700) != 0)
        return -1;
    /* flows may name folders under ROOT, never inside DATA (confine.h) */
    if (confine_configure(DATA, ROOT, NULL) < 0)
        return -1;
    FILE *fp = fopen(AFILE, "w");
    if (fp == NULL)
        return -1;
    fputs("x\n", fp);
    fclose(fp);
    return 0;
}

static int dirs_teardown(void **state)
{
    (void)state;
    confine_reset();
    test_rmtree(ROOT);
    return 0;
}

/* printf into a static document buffer. */
static const char *doc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *doc(const char *fmt, ...)
{
    static char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return buf;
}

/* flow_parse must fail with a message holding need1 (and need2 if given),
 * and leave nothing allocated in the rows. */
static void reject(const char *text, const char *need1, const char *need2)
{
    struct store_flow f;
    struct error err = {0};
    memset(&f, 0xA5, sizeof(f));
    int rc = flow_parse(text, strlen(text), &f, &err);
    if (rc != -1)
        fail_msg("accepted: %s", text);
    if (strstr(err.msg, need1) == NULL || (need2 && strstr(err.msg, need2) == NULL))
        fail_msg("error \"%s\" lacks \"%s\"%s%s%s", err.msg, need1,
                 need2 ? " / \"" : "", need2 ? need2 : "", need2 ? "\"" : "");
    assert_null(f.conns);
    assert_null(f.links);
    assert_int_equal(f.nconns, 0);
    assert_int_equal(f.nlinks, 0);
}

static void accept(const char *text, struct store_flow *f)
{
    struct error err = {0};
    if (flow_parse(text, strlen(text), f, &err) != 0)
        fail_msg("rejected (%s): %s", err.msg, text);
}

static void accept_and_clear(const char *text)
{
    struct store_flow f;
    accept(text, &f);
    store_flow_clear(&f);
}

/* One file connector `name` with a config body (without braces). */
#define ONE(cfg) "{\"connectors\":[{\"name\":\"x\",\"type\":\"file\",\"config\":{" cfg "}}]}"

/* ---- M1: accepted documents ---------------------------------------------------- */

static void test_m1_flow_accepts_issue_example(void **state)
{
    (void)state;
    struct store_flow f;
    accept(doc("{\"connectors\":[{\"name\":\"inbox\",\"type\":\"file\",\"config\":"
               "{\"receive_dir\":\"%s\",\"pattern\":\"*.edi\",\"after\":\"delete\"}},"
               "{\"name\":\"outbox\",\"type\":\"file\",\"config\":{\"send_dir\":"
               "\"%s\",\"on_collision\":\"rename\"}}],\"links\":[[\"inbox\","
               "\"outbox\"]]}", IN, OUT), &f);
    assert_int_equal(f.nconns, 2);
    assert_string_equal(f.conns[0].name, "inbox");
    assert_string_equal(f.conns[0].type, "file");
    /* configs normalized: compact, keys sorted */
    char want[1024];
    snprintf(want, sizeof(want), "{\"after\":\"delete\",\"pattern\":\"*.edi\","
             "\"receive_dir\":\"%s\"}", IN);
    assert_string_equal(f.conns[0].config, want);
    assert_string_equal(f.conns[1].name, "outbox");
    snprintf(want, sizeof(want), "{\"on_collision\":\"rename\",\"send_dir\":\"%s\"}",
             OUT);
    assert_string_equal(f.conns[1].config, want);
    assert_int_equal(f.nlinks, 1);
    assert_string_equal(f.links[0].src, "inbox");
    assert_string_equal(f.links[0].dst, "outbox");
    store_flow_clear(&f);
    assert_null(f.conns);
    assert_int_equal(f.nconns, 0);
}

static void test_m1_flow_accepts_every_option(void **state)
{
    (void)state;
    struct store_flow f;
    /* pretty-printed, archive, both directions, the common keys */
    accept(doc("{\n  \"connectors\": [\n"
               "    {\"name\": \"A.b_c-9\", \"type\": \"file\", \"config\": {\n"
               "      \"receive_dir\": \"%s\", \"after\": \"archive\",\n"
               "      \"archive_dir\": \"%s\", \"send_dir\": \"%s\",\n"
               "      \"on_collision\": \"fail\", \"log_level\": \"trace\",\n"
               "      \"poll_ms\": 10, \"retry\": {\"max_attempts\": 1000,\n"
               "      \"initial_ms\": 1, \"max_ms\": 604800000}}},\n"
               "    {\"name\": \"sink\", \"type\": \"file\", \"config\": {\n"
               "      \"send_dir\": \"%s\"}}\n  ],\n"
               "  \"links\": [[\"A.b_c-9\", \"sink\"]]\n}\n",
               IN, ARCH, OUT, OUT), &f);
    assert_int_equal(f.nconns, 2);
    assert_int_equal(f.nlinks, 1);
    assert_string_equal(f.conns[0].name, "A.b_c-9");
    assert_non_null(strstr(f.conns[0].config, "\"log_level\":\"trace\""));
    assert_non_null(strstr(f.conns[0].config, "\"max_ms\":604800000"));
    store_flow_clear(&f);

    accept("{\"connectors\":[]}", &f);
    assert_int_equal(f.nconns, 0);
    store_flow_clear(&f);

    char name64[65];
    memset(name64, 'n', 64);
    name64[64] = '\0';
    accept_and_clear(doc("{\"connectors\":[{\"name\":\"%s\",\"type\":\"file\","
                         "\"config\":{\"send_dir\":\"%s\"}}]}", name64, OUT));
    accept_and_clear(doc(ONE("\"send_dir\":\"%s\",\"on_collision\":\"overwrite\""),
                         OUT));
    /* a diamond is not a cycle */
    accept_and_clear(doc("{\"connectors\":["
        "{\"name\":\"a\",\"type\":\"file\",\"config\":{\"receive_dir\":\"%s\"}},"
        "{\"name\":\"b\",\"type\":\"file\",\"config\":{\"receive_dir\":\"%s\",\"send_dir\":\"%s\"}},"
        "{\"name\":\"c\",\"type\":\"file\",\"config\":{\"receive_dir\":\"%s\",\"send_dir\":\"%s\"}},"
        "{\"name\":\"d\",\"type\":\"file\",\"config\":{\"send_dir\":\"%s\"}}],"
        "\"links\":[[\"a\",\"b\"],[\"a\",\"c\"],[\"b\",\"d\"],[\"c\",\"d\"]]}",
        IN, IN, OUT, IN, OUT, OUT));
}

/* ---- M1: rejected documents ---------------------------------------------------- */

static void test_m1_flow_rejects_malformed_json(void **state)
{
    (void)state;
    reject("{\"connectors\":[", "not valid JSON", "line 1");
    reject("{\n\"connectors\": [\n  {\"name\": \"x\",,}\n]}", "not valid JSON",
           "line 3");
    reject("", "not valid JSON", NULL);
    reject("{\"connectors\":[],\"connectors\":[]}", "not valid JSON", "duplicate");
    reject("{\"connectors\":[]} trailing", "not valid JSON", NULL);
    reject("[]", "flow document", NULL);
}

static void test_m1_flow_rejects_unknown_top_level_key(void **state)
{
    (void)state;
    reject("{\"connectors\":[],\"links\":[],\"flows\":[]}", "flow document", "flows");
    reject("{\"links\":[]}", "flow document", "connectors");
    reject("{\"connectors\":{}}", "connectors and links must be arrays", NULL);
    reject("{\"connectors\":[],\"links\":{}}", "connectors and links must be arrays",
           NULL);
}

static void test_m1_flow_rejects_unknown_connector_type(void **state)
{
    (void)state;
    reject("{\"connectors\":[{\"name\":\"x\",\"type\":\"as3\",\"config\":{}}]}",
           "connector 'x': unknown type 'as3'", "(known: file");
    reject("{\"connectors\":[{\"name\":\"x\",\"config\":{}}]}", "connectors[0]",
           "type");
    reject(doc("{\"connectors\":[{\"name\":\"x\",\"type\":\"file\",\"config\":"
               "{\"send_dir\":\"%s\"},\"color\":1}]}", OUT), "connectors[0]", "color");
}

static void test_m1_flow_rejects_duplicate_name(void **state)
{
    (void)state;
    reject(doc("{\"connectors\":[{\"name\":\"x\",\"type\":\"file\",\"config\":"
               "{\"send_dir\":\"%s\"}},{\"name\":\"x\",\"type\":\"file\",\"config\":"
               "{\"send_dir\":\"%s\"}}]}", OUT, OUT),
           "connector 'x' is defined twice", NULL);
}

static void test_m1_flow_rejects_bad_name_characters(void **state)
{
    (void)state;
    const char *bad[] = { "a b", "", "a/b", "in\\u00fcbox", "x;drop", "a\\nb" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        reject(doc("{\"connectors\":[{\"name\":\"%s\",\"type\":\"file\",\"config\":"
                   "{\"send_dir\":\"%s\"}}]}", bad[i], OUT),
               "connectors[0]: name must be 1-64 characters", "A-Z a-z 0-9 . _ -");
    char name65[66];
    memset(name65, 'n', 65);
    name65[65] = '\0';
    reject(doc("{\"connectors\":[{\"name\":\"ok\",\"type\":\"file\",\"config\":"
               "{\"send_dir\":\"%s\"}},{\"name\":\"%s\",\"type\":\"file\",\"config\":"
               "{\"send_dir\":\"%s\"}}]}", OUT, name65, OUT),
           "connectors[1]: name must be 1-64 characters", NULL);
    reject("{\"connectors\":[{\"name\":7,\"type\":\"file\"}]}", "connectors[0]", NULL);
}

static void test_m1_flow_rejects_missing_folder(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof(want), "receive_dir %s: No such file or directory",
             MISSING);
    reject(doc(ONE("\"receive_dir\":\"%s\""), MISSING), "connector 'x' (file)", want);
    snprintf(want, sizeof(want), "send_dir %s: No such file or directory", MISSING);
    reject(doc(ONE("\"send_dir\":\"%s\""), MISSING), "connector 'x' (file)", want);
    snprintf(want, sizeof(want), "receive_dir %s is not a directory", AFILE);
    reject(doc(ONE("\"receive_dir\":\"%s\""), AFILE), want, NULL);
    snprintf(want, sizeof(want), "archive_dir %s: No such file", MISSING);
    reject(doc(ONE("\"receive_dir\":\"%s\",\"after\":\"archive\",\"archive_dir\":\"%s\""),
               IN, MISSING), want, NULL);
}

static void test_m1_flow_rejects_relative_path(void **state)
{
    (void)state;
    reject(ONE("\"receive_dir\":\"srv/in\""),
           "receive_dir must be an absolute path, not 'srv/in'", NULL);
    reject(ONE("\"send_dir\":\"./out\""), "send_dir must be an absolute path", NULL);
    reject(doc(ONE("\"receive_dir\":\"%s\",\"after\":\"archive\",\"archive_dir\":\"a\""),
               IN), "archive_dir must be an absolute path", NULL);
}

static void test_m1_flow_rejects_unknown_config_key(void **state)
{
    (void)state;
    reject(doc(ONE("\"send_dir\":\"%s\",\"colour\":\"blue\""), OUT),
           "connector 'x' (file)", "unknown key \"colour\"");
    reject(ONE("\"send_dir\":5"), "send_dir must be a string", NULL);
    reject("{\"connectors\":[{\"name\":\"x\",\"type\":\"file\",\"config\":[]}]}",
           "connector 'x': config must be an object", NULL);
    reject("{\"connectors\":[{\"name\":\"x\",\"type\":\"file\",\"config\":{}}]}",
           "needs receive_dir (source), send_dir (destination) or both", NULL);
    reject("{\"connectors\":[{\"name\":\"x\",\"type\":\"file\"}]}",
           "needs receive_dir", NULL);
}

static void test_m1_flow_rejects_bad_after(void **state)
{
    (void)state;
    reject(doc(ONE("\"receive_dir\":\"%s\",\"after\":\"keep\""), IN),
           "after must be \"delete\" or \"archive\", not \"keep\"", NULL);
    reject(doc(ONE("\"receive_dir\":\"%s\",\"pattern\":\"sub/*.edi\""), IN),
           "pattern must be a file-name glob without '/'", NULL);
    reject(doc(ONE("\"receive_dir\":\"%s\",\"pattern\":\"\""), IN),
           "pattern must be", NULL);
}

static void test_m1_flow_rejects_archive_without_dir(void **state)
{
    (void)state;
    reject(doc(ONE("\"receive_dir\":\"%s\",\"after\":\"archive\""), IN),
           "after \"archive\" needs archive_dir", NULL);
}

static void test_m1_flow_rejects_bad_on_collision(void **state)
{
    (void)state;
    reject(doc(ONE("\"send_dir\":\"%s\",\"on_collision\":\"append\""), OUT),
           "on_collision must be \"rename\", \"overwrite\" or \"fail\", not \"append\"",
           NULL);
}

/* Two connectors a (source) and b (both) with the given links. */
static const char *two(const char *links)
{
    return doc("{\"connectors\":["
               "{\"name\":\"a\",\"type\":\"file\",\"config\":{\"receive_dir\":\"%s\"}},"
               "{\"name\":\"b\",\"type\":\"file\",\"config\":{"
               "\"send_dir\":\"%s\"}}],\"links\":%s}", IN, OUT, links);
}

/* R14: the folders a flow may name lie under allowed_paths (ROOT here),
 * never inside the data dir, reached without a symlink. */
static void test_r14_flow_paths_are_confined(void **state)
{
    (void)state;
    char link[400], sub[400];
    reject(ONE("\"send_dir\":\"/etc\""), "send_dir /etc is outside the "
           "folders an administrator allowed", "allowed_paths");
    reject(doc(ONE("\"send_dir\":\"%s\""), DATA), "inside the data "
           "directory", NULL);
    snprintf(sub, sizeof(sub), "%s/in/../data", ROOT);
    reject(doc(ONE("\"send_dir\":\"%s\""), sub), ". or ..", NULL);
    snprintf(link, sizeof(link), "%s/to-data", ROOT);
    assert_int_equal(symlink(DATA, link), 0);
    reject(doc(ONE("\"send_dir\":\"%s\""), link), "symbolic link", NULL);
    unlink(link);
    confine_reset();
    reject(doc(ONE("\"send_dir\":\"%s\""), OUT), "no folder may be used",
           "allowed_paths");
    assert_int_equal(confine_configure(DATA, ROOT, NULL), 0);
}

/* R14: a root inside the data dir is refused when configured. */
static void test_r14_allowed_path_inside_data_dir_refused(void **state)
{
    (void)state;
    char inner[400];
    struct error err = {0};
    snprintf(inner, sizeof(inner), "%s/payloads", DATA);
    assert_int_equal(mkdir(inner, 0700), 0);
    assert_int_equal(confine_configure(DATA, inner, &err), -1);
    assert_non_null(strstr(err.msg, "inside the data directory"));
    rmdir(inner);
    assert_int_equal(confine_configure(DATA, ROOT, NULL), 0);
}

static void test_m1_flow_rejects_link_to_unknown_connector(void **state)
{
    (void)state;
    accept_and_clear(two("[[\"a\",\"b\"]]"));
    reject(two("[[\"a\",\"ghost\"]]"), "links[0] names unknown connector 'ghost'", NULL);
    reject(two("[[\"a\",\"b\"],[\"ghost\",\"b\"]]"),
           "links[1] names unknown connector 'ghost'", NULL);
}

static void test_m1_flow_rejects_malformed_link(void **state)
{
    (void)state;
    const char *bad[] = { "[[\"a\"]]", "[[\"a\",\"b\",\"b\"]]", "[[1,2]]",
                          "[\"a\"]", "[{\"a\":\"b\"}]" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        reject(two(bad[i]), "links[0] must be [\"from\", \"to\"]", NULL);
}

static void test_m1_flow_rejects_self_link(void **state)
{
    (void)state;
    reject(two("[[\"b\",\"b\"]]"), "links[0] links 'b' to itself", NULL);
}

static void test_m1_flow_rejects_duplicate_link(void **state)
{
    (void)state;
    reject(two("[[\"a\",\"b\"],[\"a\",\"b\"]]"), "link a -> b is listed twice", NULL);
}

static void test_m1_flow_rejects_cycle(void **state)
{
    (void)state;
    reject(two("[[\"a\",\"b\"],[\"b\",\"a\"]]"), "links form a cycle", NULL);
    reject(doc("{\"connectors\":["
        "{\"name\":\"p\",\"type\":\"file\",\"config\":{\"receive_dir\":\"%s\",\"send_dir\":\"%s\"}},"
        "{\"name\":\"q\",\"type\":\"file\",\"config\":{\"receive_dir\":\"%s\",\"send_dir\":\"%s\"}},"
        "{\"name\":\"r\",\"type\":\"file\",\"config\":{\"receive_dir\":\"%s\",\"send_dir\":\"%s\"}},"
        "{\"name\":\"s\",\"type\":\"file\",\"config\":{\"send_dir\":\"%s\"}}],"
        "\"links\":[[\"p\",\"s\"],[\"p\",\"q\"],[\"q\",\"r\"],[\"r\",\"p\"]]}",
        IN, OUT, IN, OUT, IN, OUT, OUT), "cycle", "loop forever");
}

static void test_m2_flow_rejects_bad_retry(void **state)
{
    (void)state;
    struct { const char *retry, *need; } cases[] = {
        { "{\"max_attempts\":0}", "retry.max_attempts must be 1..1000" },
        { "{\"max_attempts\":1001}", "retry.max_attempts must be 1..1000" },
        { "{\"max_attempts\":\"3\"}", "retry.max_attempts must be 1..1000" },
        { "{\"max_attempts\":2.5}", "retry.max_attempts must be 1..1000" },
        { "{\"initial_ms\":0}", "retry.initial_ms must be 1..86400000" },
        { "{\"initial_ms\":86400001}", "retry.initial_ms must be 1..86400000" },
        { "{\"max_ms\":-1}", "retry.max_ms must be 1..604800000" },
        { "{\"max_ms\":604800001}", "retry.max_ms must be 1..604800000" },
        { "{\"maxAttempts\":3}", "retry: " },
        { "[3]", "retry: " },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        reject(doc(ONE("\"send_dir\":\"%s\",\"retry\":%s"), OUT, cases[i].retry),
               "connector 'x' (file)", cases[i].need);
    reject(doc(ONE("\"receive_dir\":\"%s\",\"poll_ms\":9"), IN),
           "poll_ms must be 10..3600000", NULL);
    reject(doc(ONE("\"receive_dir\":\"%s\",\"poll_ms\":3600001"), IN),
           "poll_ms must be 10..3600000", NULL);
}

static void test_r5_flow_rejects_bad_log_level(void **state)
{
    (void)state;
    reject(doc(ONE("\"send_dir\":\"%s\",\"log_level\":\"loud\""), OUT),
           "connector 'x' (file)",
           "log_level must be error, warning, info, debug or trace");
    reject(doc(ONE("\"send_dir\":\"%s\",\"log_level\":3"), OUT),
           "log_level must be", NULL);
    accept_and_clear(doc(ONE("\"send_dir\":\"%s\",\"log_level\":\"warn\""), OUT));
}

static void test_m1_flow_rejects_oversized_document(void **state)
{
    (void)state;
    size_t len = (size_t)FLOW_DOC_MAX + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, ' ', len);
    struct store_flow f;
    struct error err = {0};
    assert_int_equal(flow_parse(big, len, &f, &err), -1);
    assert_non_null(strstr(err.msg, "larger than"));
    assert_int_equal(f.nconns, 0);
    free(big);
}

/* ---- M8: wharf.conf ------------------------------------------------------------------ */

static void conf_ok(const char *text, struct wharf_conf *c)
{
    struct error err = {0};
    if (conf_parse(text, strlen(text), c, &err) != 0)
        fail_msg("rejected (%s): %s", err.msg, text);
}

static void conf_bad(const char *text, const char *need1, const char *need2)
{
    struct wharf_conf c;
    struct error err = {0};
    if (conf_parse(text, strlen(text), &c, &err) != -1)
        fail_msg("accepted: %s", text);
    if (strstr(err.msg, need1) == NULL || (need2 && strstr(err.msg, need2) == NULL))
        fail_msg("error \"%s\" lacks \"%s\"%s%s", err.msg, need1,
                 need2 ? " / " : "", need2 ? need2 : "");
}

static void test_m8_conf_defaults(void **state)
{
    (void)state;
    struct wharf_conf c, d;
    conf_ok("", &c);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.workers, 2);
    assert_int_equal(c.batch, 256);
    assert_true(c.lease_ms == 60000);
    assert_true(c.poll_ms == 1000);
    assert_true(c.log_max_bytes == (size_t)10 * 1024 * 1024);
    assert_int_equal(c.log_keep, 5);
    assert_string_equal(c.admin_listen, "127.0.0.1:8443");
    assert_string_equal(c.partner_listen, "127.0.0.1:4080");
    conf_defaults(&d);
    assert_memory_equal(&c, &d, sizeof(c));
    /* comments and blank lines only: still the defaults */
    conf_ok("# nothing\n\n   \n\t# set\r\n", &c);
    assert_memory_equal(&c, &d, sizeof(c));
}

static void test_m8_conf_accepts_each_key(void **state)
{
    (void)state;
    struct wharf_conf c;
    conf_ok("# every key\n"
            "log_level = debug\n"
            "workers=7\n"
            "  batch\t=\t100   # trailing comment\r\n"
            "lease_seconds = 30\n"
            "poll_ms = 250\n"
            "log_max_bytes = 1048576\n"
            "log_keep = 9\n"
            "admin_listen = 0.0.0.0:9443\n"
            "partner_listen = 127.0.0.2:4081", &c);     /* no final newline */
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.workers, 7);
    assert_int_equal(c.batch, 100);
    assert_true(c.lease_ms == 30000);
    assert_true(c.poll_ms == 250);
    assert_true(c.log_max_bytes == 1048576);
    assert_int_equal(c.log_keep, 9);
    assert_string_equal(c.admin_listen, "0.0.0.0:9443");
    assert_string_equal(c.partner_listen, "127.0.0.2:4081");

    /* the limits themselves are allowed; the level is case-blind */
    conf_ok("workers = 1\nbatch = 4096\nlease_seconds = 86400\npoll_ms = 10\n"
            "log_keep = 100\nlog_max_bytes = 4096\nlog_level = TRACE\n", &c);
    assert_int_equal(c.workers, 1);
    assert_int_equal(c.batch, 4096);
    assert_true(c.lease_ms == 86400000LL);
    assert_int_equal(c.log_level, LOG_TRACE);
    conf_ok("workers = 64\nlog_level = warn\nlog_level = error\n", &c);
    assert_int_equal(c.workers, 64);
    assert_int_equal(c.log_level, LOG_ERROR);   /* the last one counts */
}

static void test_m8_conf_rejects_unknown_key(void **state)
{
    (void)state;
    conf_bad("log_level = info\nworkrs = 2\n", "line 2: unknown setting 'workrs'", NULL);
    conf_bad("\n\n\nLOG_LEVEL = info\n", "line 4: unknown setting 'LOG_LEVEL'", NULL);
    conf_bad("log_level info\n", "line 1: expected 'key = value'", NULL);
    conf_bad("# c\n = 3\n", "line 2: missing key before '='", NULL);
    conf_bad("log_level = chatty\n", "line 1: log_level must be error, warning, "
             "info, debug or trace, not 'chatty'", NULL);
}

static void test_m8_conf_rejects_bad_numbers(void **state)
{
    (void)state;
    conf_bad("workers = two\n",
             "line 1: workers must be a whole number from 1 to 64, not 'two'", NULL);
    conf_bad("log_level = info\nbatch = 12abc\n", "line 2: batch must be a whole "
             "number", "not '12abc'");
    conf_bad("poll_ms =\n", "line 1: poll_ms must be a whole number", "not ''");
    conf_bad("lease_seconds = 1.5\n", "line 1: lease_seconds", "not '1.5'");
    conf_bad("log_max_bytes = 99999999999999999999999\n", "line 1: log_max_bytes "
             "must be a whole number from 4096 to 1099511627776", NULL);
    conf_bad("log_keep = 0x10\n", "line 1: log_keep", NULL);
}

static void test_m8_conf_rejects_out_of_range(void **state)
{
    (void)state;
    struct { const char *line, *need; } cases[] = {
        { "workers = 0", "workers must be a whole number from 1 to 64, not '0'" },
        { "workers = 65", "workers must be a whole number from 1 to 64" },
        { "workers = -1", "workers must be" },
        { "batch = 4097", "batch must be a whole number from 1 to 4096" },
        { "lease_seconds = 86401", "lease_seconds must be a whole number from 1 to 86400" },
        { "lease_seconds = 0", "lease_seconds must be" },
        { "poll_ms = 9", "poll_ms must be a whole number from 10 to 3600000" },
        { "log_keep = 101", "log_keep must be a whole number from 1 to 100" },
        { "log_max_bytes = 4095", "log_max_bytes must be a whole number from 4096" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        conf_bad(doc("# wharf.conf\nlog_level = info\n%s\nbatch = 1\n", cases[i].line),
                 "line 3: ", cases[i].need);

    char longv[300];
    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    conf_bad(doc("admin_listen = %s\n", longv), "line 1: admin_listen", NULL);
    conf_bad("partner_listen = [::1]:4081\n", "line 1: partner_listen", "not an IPv4 address");
    conf_bad("admin_listen = 127.0.0.1:70000\n", "line 1: admin_listen", NULL);

    struct wharf_conf c;
    struct error err = {0};
    assert_int_equal(conf_parse("workers = 2\0x", 13, &c, &err), -1);
    assert_non_null(strstr(err.msg, "NUL"));
    size_t big = 64 * 1024 + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, '#', big);
    assert_int_equal(conf_parse(text, big, &c, &err), -1);
    assert_non_null(strstr(err.msg, "larger than"));
    free(text);
}

/* ---- R5: reloading wharf.conf (SIGHUP) ----------------------------------------------- */

static void put_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool named(const char *const *keys, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return true;
    return false;
}

/* Every key of wharf.conf changed at once: the live ones are applied and
 * named, every other one is named as needing a restart and keeps its
 * running value; a file that does not parse changes nothing. */
static void test_r05_conf_reload_live_and_restart_keys(void **state)
{
    (void)state;
    char dir[256];
    test_tmpdir(dir, sizeof(dir));
    struct wharf w;
    memset(&w, 0, sizeof(w));
    snprintf(w.conf_path, sizeof(w.conf_path), "%s/wharf.conf", dir);
    conf_ok("", &w.conf);
    put_text(w.conf_path,
        "log_level = debug\nlog_max_bytes = 8192\nlog_keep = 3\n"
        "log_repeat_seconds = 5\nhealth_failing_seconds = 7\n"
        "ban_after_failures = 3\nban_seconds = 5\nban_window_seconds = 9\n"
        "workers = 4\nbatch = 8\nlease_seconds = 9\npoll_ms = 77\n"
        "admin_listen = 127.0.0.1:9443\npartner_listen = 127.0.0.1:9080\n"
        "tls_cert = a.pem\ntls_key = a.key\nadmin_client_ca = ca.pem\n"
        "partner_client_ca = ca2.pem\nmax_header_bytes = 2048\n"
        "max_body_bytes = 2048\nrequest_timeout_ms = 1000\n"
        "idle_timeout_ms = 1000\nmax_conns_per_address = 3\n"
        "http_threads = 4\nproxy = http://p:3128\n"
        "proxy_credentials_file = /x\nno_proxy = localhost\n");
    struct wharf_reload r;
    struct error err = {0};
    if (wharf_conf_reload(&w, &r, &err) != 0)
        fail_msg("reload: %s", err.msg);
    assert_int_equal(r.nlive, 8);
    assert_int_equal(r.nrestart, 19);
    static const char *const live[] = { "log_level", "log_max_bytes",
        "log_keep", "log_repeat_seconds", "health_failing_seconds",
        "ban_after_failures", "ban_seconds", "ban_window_seconds" };
    for (size_t i = 0; i < 8; i++)
        assert_true(named(r.live, r.nlive, live[i]));
    assert_true(named(r.restart, r.nrestart, "workers"));
    assert_true(named(r.restart, r.nrestart, "request_timeout_ms"));
    assert_true(named(r.restart, r.nrestart, "no_proxy"));
    assert_int_equal(w.conf.log_level, LOG_DEBUG);
    assert_int_equal(w.conf.log_max_bytes, 8192);
    assert_int_equal(w.conf.log_repeat_ms, 5000);
    assert_int_equal(w.conf.health_failing_ms, 7000);
    assert_int_equal(w.conf.ban_after_failures, 3);
    assert_int_equal(w.conf.workers, 2);                /* running value */
    assert_string_equal(w.conf.admin_listen, "127.0.0.1:8443");
    assert_string_equal(w.conf.proxy, "");
    assert_int_equal(w.conf.request_timeout_ms, 30000);

    /* the same file again: nothing new to apply, the restart keys are
     * still pending */
    assert_int_equal(wharf_conf_reload(&w, &r, &err), 0);
    assert_int_equal(r.nlive, 0);
    assert_int_equal(r.nrestart, 19);

    put_text(w.conf_path, "log_level = error\nlog_level = loud\n");
    assert_int_equal(wharf_conf_reload(&w, &r, &err), -1);
    assert_non_null(strstr(err.msg, "wharf.conf: line 2: log_level"));
    assert_int_equal(w.conf.log_level, LOG_DEBUG);
    assert_int_equal(r.nlive + r.nrestart, 0);
    unlink(w.conf_path);
    assert_int_equal(wharf_conf_reload(&w, &r, &err), -1);
    assert_int_equal(w.conf.log_level, LOG_DEBUG);
    test_rmtree(dir);
}

/* ---- R2: the global proxy in wharf.conf, and the rule that picks a proxy ------------- */

/* R22: who serve runs as, and its sandbox switch. */
static void test_r22_conf_privilege_keys(void **state)
{
    (void)state;
    struct wharf_conf c;
    conf_ok("", &c);
    assert_string_equal(c.user, "");
    assert_string_equal(c.group, "");
    assert_int_equal(c.allow_root, 0);
    assert_int_equal(c.sandbox, 1);                     /* on by default */
    conf_ok("user = wharf\ngroup = edi-ops\nallow_root = yes\n"
            "sandbox = off\n", &c);
    assert_string_equal(c.user, "wharf");
    assert_string_equal(c.group, "edi-ops");
    assert_int_equal(c.allow_root, 1);
    assert_int_equal(c.sandbox, 0);
    conf_ok("user = svc_wharf.2\nuser =\n", &c);      /* emptied */
    assert_string_equal(c.user, "");
    conf_bad("sandbox = maybe\n", "sandbox must be on or off", NULL);
    conf_bad("sandbox = yes\n", "sandbox must be on or off", NULL);
    conf_bad("allow_root = on\n", "allow_root must be yes or no", NULL);
    conf_bad("user = ../root\n", "user must be an account name", NULL);
    conf_bad("user = a b\n", "user must be an account name", NULL);
    conf_bad("user = -x\n", "user must be an account name", NULL);
    conf_bad("user = w\ngroup = g:1\n", "line 2: group must be an account",
             NULL);
    conf_bad("group = wharf\n", "group is set but user is not", NULL);
    conf_bad("user = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
             "aaaaaaa\n", "user is too long", NULL);
}

/* R22: a running serve cannot change who it is or its sandbox: restart
 * keys. */
static void test_r22_privilege_keys_take_effect_at_restart(void **state)
{
    (void)state;
    char dir[256];
    test_tmpdir(dir, sizeof(dir));
    struct wharf w;
    memset(&w, 0, sizeof(w));
    snprintf(w.conf_path, sizeof(w.conf_path), "%s/wharf.conf", dir);
    conf_ok("", &w.conf);
    put_text(w.conf_path, "user = other\ngroup = g\nallow_root = yes\n"
             "sandbox = off\n");
    struct wharf_reload r;
    struct error err = {0};
    if (wharf_conf_reload(&w, &r, &err) != 0)
        fail_msg("reload: %s", err.msg);
    assert_int_equal(r.nlive, 0);
    assert_int_equal(r.nrestart, 4);
    assert_true(named(r.restart, r.nrestart, "user"));
    assert_true(named(r.restart, r.nrestart, "group"));
    assert_true(named(r.restart, r.nrestart, "allow_root"));
    assert_true(named(r.restart, r.nrestart, "sandbox"));
    assert_string_equal(w.conf.user, "");               /* running values */
    assert_int_equal(w.conf.sandbox, 1);
    assert_int_equal(w.conf.allow_root, 0);
    unlink(w.conf_path);
    test_rmtree(dir);
}

static void test_r02_conf_proxy_keys(void **state)
{
    (void)state;
    struct wharf_conf c;
    conf_ok("", &c);
    assert_string_equal(c.proxy, "");
    assert_string_equal(c.proxy_credentials_file, "");
    assert_string_equal(c.no_proxy, "");
    conf_ok("proxy = socks5h://proxy.example:1080\n"
            "proxy_credentials_file = /etc/wharf/proxy\n"
            "no_proxy = localhost, .example.org,10.0.0.0/8\n", &c);
    assert_string_equal(c.proxy, "socks5h://proxy.example:1080");
    assert_string_equal(c.proxy_credentials_file, "/etc/wharf/proxy");
    assert_string_equal(c.no_proxy, "localhost, .example.org,10.0.0.0/8");
    conf_ok("proxy = http://[::1]:3128/\nproxy =\n", &c);    /* emptied */
    assert_string_equal(c.proxy, "");
    conf_bad("proxy = ftp://p:21\n", "line 1: proxy must start with", NULL);
    conf_bad("proxy = http://u:secret@p:3128\n", "must not hold credentials",
             NULL);
    conf_bad("proxy = http://p\n", "SCHEME://HOST:PORT", NULL);
    conf_bad("proxy = http://p:99999\n", "SCHEME://HOST:PORT", NULL);
    conf_bad("proxy = http://p:3128/path\n", "SCHEME://HOST:PORT", NULL);
    conf_bad("proxy = http://::1:3128\n", "SCHEME://HOST:PORT", NULL);
    conf_bad("proxy = http://p:1\nproxy_credentials_file = rel\n", "line 2: "
             "proxy_credentials_file must be an absolute path", NULL);
    conf_bad("proxy = http://p:1\nno_proxy = a,,b\n", "line 2: no_proxy has an "
             "empty entry", NULL);
    conf_bad("proxy = http://p:1\nno_proxy = a;b\n", "no_proxy entry 'a;b'",
             NULL);
    conf_bad("no_proxy = localhost\n", "no_proxy is set but proxy is not",
             NULL);
    conf_bad("proxy_credentials_file = /x\n", "proxy_credentials_file is set "
             "but proxy is not", NULL);
}

static void test_r02_proxy_pick(void **state)
{
    (void)state;
    struct net_proxy own = {0}, global = { "http://g:3128", "localhost", NULL };
    struct net_proxy out;
    /* nothing of its own: the global one, with its no_proxy */
    assert_int_equal(net_client_proxy_pick(&own, &global, &out),
                     NET_PROXY_GLOBAL);
    assert_string_equal(out.url, "http://g:3128");
    assert_string_equal(out.no_proxy, "localhost");
    /* its own wins (and the global no_proxy does not come along) */
    own.url = "socks5h://o:1080";
    assert_int_equal(net_client_proxy_pick(&own, &global, &out),
                     NET_PROXY_OWN);
    assert_string_equal(out.url, "socks5h://o:1080");
    assert_null(out.no_proxy);
    /* "direct": no proxy at all */
    own.url = "direct";
    assert_int_equal(net_client_proxy_pick(&own, &global, &out),
                     NET_PROXY_DIRECT);
    assert_null(out.url);
    /* no global one: direct */
    own.url = NULL;
    global.url = "";
    assert_int_equal(net_client_proxy_pick(&own, &global, &out),
                     NET_PROXY_DIRECT);
    assert_null(out.url);
    assert_int_equal(net_client_proxy_pick(NULL, NULL, &out),
                     NET_PROXY_DIRECT);
}

/* ---- M2: the retry schedule ---------------------------------------------------------- */

static long long nominal(long long initial, long long max, int attempts)
{
    long long d = initial;
    for (int i = 1; i < attempts && d < max; i++)
        d *= 2;
    return d > max ? max : d;
}

static void test_m2_backoff_grows_exponentially(void **state)
{
    (void)state;
    /* no jitter drawn (rnd 0): exactly half the nominal delay */
    long long prev = engine_backoff_ms(1000, 1LL << 40, 1, 0);
    assert_true(prev == 500);
    for (int a = 2; a <= 20; a++) {
        long long b = engine_backoff_ms(1000, 1LL << 40, a, 0);
        assert_true(b == 2 * prev);
        prev = b;
    }
    /* the largest jitter reaches the nominal delay: 1 s, 2 s, 4 s, 8 s */
    assert_true(engine_backoff_ms(1000, 600000, 1, 500) == 1000);
    assert_true(engine_backoff_ms(1000, 600000, 2, 1000) == 2000);
    assert_true(engine_backoff_ms(1000, 600000, 3, 2000) == 4000);
    assert_true(engine_backoff_ms(1000, 600000, 4, 4000) == 8000);
}

static void test_m2_backoff_within_jitter_bounds(void **state)
{
    (void)state;
    unsigned rnds[] = { 0, 1, 2, 7, 499, 500, 501, 12345, 65535, 2147483647u,
                        4294967295u };
    srand(42);
    for (int a = 1; a <= 30; a++) {
        long long d = nominal(250, 600000, a);
        long long lo = LLONG_MAX, hi = -1;
        for (size_t i = 0; i < sizeof(rnds) / sizeof(*rnds) + 50; i++) {
            unsigned r = i < sizeof(rnds) / sizeof(*rnds) ? rnds[i] : (unsigned)rand();
            long long b = engine_backoff_ms(250, 600000, a, r);
            if (b < d / 2 || b > d)
                fail_msg("attempt %d rnd %u: %lld not in [%lld, %lld]", a, r, b,
                         d / 2, d);
            lo = b < lo ? b : lo;
            hi = b > hi ? b : hi;
        }
        assert_true(hi > lo);       /* there is jitter */
    }
}

static void test_m2_backoff_capped(void **state)
{
    (void)state;
    /* 1 s doubling passes 600 s at the 11th attempt (1024 s nominal) */
    assert_true(engine_backoff_ms(1000, 600000, 10, 0) == 256000);
    int attempts[] = { 11, 12, 20, 64, 1000, INT_MAX };
    for (size_t i = 0; i < sizeof(attempts) / sizeof(*attempts); i++) {
        assert_true(engine_backoff_ms(1000, 600000, attempts[i], 0) == 300000);
        assert_true(engine_backoff_ms(1000, 600000, attempts[i], 300000) == 600000);
        long long b = engine_backoff_ms(1000, 600000, attempts[i], 4294967295u);
        assert_true(b >= 300000 && b <= 600000);
    }
    /* a first delay above the cap is cut to the cap */
    long long b = engine_backoff_ms(90000, 60000, 1, 12345);
    assert_true(b >= 30000 && b <= 60000);
    /* attempt 0 (never tried) waits like the first one */
    assert_true(engine_backoff_ms(1000, 600000, 0, 0) == 500);
}


/* A long chain builds a document of n connectors c0 -> c1 -> ... */
static char *chain_doc(size_t n)
{
    size_t cap = n * (strlen(OUT) + 160) + 64, len = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    len += (size_t)snprintf(b + len, cap - len, "{\"connectors\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(b + len, cap - len, "%s{\"name\":\"c%zu\","
            "\"type\":\"file\",\"config\":{\"send_dir\":\"%s\"}}",
            i ? "," : "", i, OUT);
    len += (size_t)snprintf(b + len, cap - len, "],\"links\":[");
    for (size_t i = 0; i + 1 < n; i++)
        len += (size_t)snprintf(b + len, cap - len, "%s[\"c%zu\",\"c%zu\"]",
                                i ? "," : "", i, i + 1);
    snprintf(b + len, cap - len, "]}");
    return b;
}

/* Validation has no recursion to exhaust and a bounded size: the longest
 * allowed chain parses; one connector more is refused with the limit. */
static void test_m1_flow_long_chain_and_limits(void **state)
{
    (void)state;
    struct store_flow f;
    struct error err = {0};
    char *ok = chain_doc(FLOW_MAX_CONNECTORS);
    assert_int_equal(flow_parse(ok, strlen(ok), &f, &err), 0);
    assert_int_equal(f.nconns, FLOW_MAX_CONNECTORS);
    assert_int_equal(f.nlinks, FLOW_MAX_CONNECTORS - 1);
    store_flow_clear(&f);
    free(ok);
    char *big = chain_doc(FLOW_MAX_CONNECTORS + 1);
    assert_int_equal(flow_parse(big, strlen(big), &f, &err), -1);
    assert_non_null(strstr(err.msg, "at most 4096 connectors"));
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_m1_flow_accepts_issue_example),
        cmocka_unit_test(test_m1_flow_long_chain_and_limits),
        cmocka_unit_test(test_m1_flow_accepts_every_option),
        cmocka_unit_test(test_m1_flow_rejects_malformed_json),
        cmocka_unit_test(test_m1_flow_rejects_unknown_top_level_key),
        cmocka_unit_test(test_m1_flow_rejects_unknown_connector_type),
        cmocka_unit_test(test_m1_flow_rejects_duplicate_name),
        cmocka_unit_test(test_m1_flow_rejects_bad_name_characters),
        cmocka_unit_test(test_m1_flow_rejects_missing_folder),
        cmocka_unit_test(test_m1_flow_rejects_relative_path),
        cmocka_unit_test(test_m1_flow_rejects_unknown_config_key),
        cmocka_unit_test(test_m1_flow_rejects_bad_after),
        cmocka_unit_test(test_m1_flow_rejects_archive_without_dir),
        cmocka_unit_test(test_m1_flow_rejects_bad_on_collision),
        cmocka_unit_test(test_r14_flow_paths_are_confined),
        cmocka_unit_test(test_r14_allowed_path_inside_data_dir_refused),
        cmocka_unit_test(test_m1_flow_rejects_link_to_unknown_connector),
        cmocka_unit_test(test_m1_flow_rejects_malformed_link),
        cmocka_unit_test(test_m1_flow_rejects_self_link),
        cmocka_unit_test(test_m1_flow_rejects_duplicate_link),
        cmocka_unit_test(test_m1_flow_rejects_cycle),
        cmocka_unit_test(test_m2_flow_rejects_bad_retry),
        cmocka_unit_test(test_r5_flow_rejects_bad_log_level),
        cmocka_unit_test(test_m1_flow_rejects_oversized_document),
        cmocka_unit_test(test_m8_conf_defaults),
        cmocka_unit_test(test_m8_conf_accepts_each_key),
        cmocka_unit_test(test_m8_conf_rejects_unknown_key),
        cmocka_unit_test(test_m8_conf_rejects_bad_numbers),
        cmocka_unit_test(test_m8_conf_rejects_out_of_range),
        cmocka_unit_test(test_r05_conf_reload_live_and_restart_keys),
        cmocka_unit_test(test_r02_conf_proxy_keys),
        cmocka_unit_test(test_r22_conf_privilege_keys),
        cmocka_unit_test(test_r22_privilege_keys_take_effect_at_restart),
        cmocka_unit_test(test_r02_proxy_pick),
        cmocka_unit_test(test_m2_backoff_grows_exponentially),
        cmocka_unit_test(test_m2_backoff_within_jitter_bounds),
        cmocka_unit_test(test_m2_backoff_capped),
    };
    return cmocka_run_group_tests_name("flow", tests, dirs_setup, dirs_teardown);
}
