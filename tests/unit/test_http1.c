/*
 * test_http1.c - request framing (src/net/http1.c, R22): heads fed whole
 * and byte by byte give the same request; the strictness rules (white
 * space before ':', obsolete line folding, HTTP versions other than 1.0
 * and 1.1, control characters, Host, Transfer-Encoding) answer 400/501;
 * CL+TE and repeated Content-Length are refused (request smuggling);
 * chunked bodies with extensions and trailers decode, and the trailers
 * never become headers; pipelined requests come apart at the right byte;
 * heads past the limit answer 431; keep-alive follows the version and
 * Connection.
 */
#include "testutil.h"

#include "net/http1.h"

#define HEAD_MAX 4096

/* One request: parsed head, decoded body, where the message ended. */
struct parsed {
    int head_rc, body_rc, status;
    size_t head_used, used;         /* bytes of the head, of the message */
    char body[8192];
    size_t body_len;
};

/* Feed data[0..n) in pieces of step bytes (0: all at once) through the
 * head and then the body of one request. */
static void parse_one(struct http1 *h, const char *data, size_t n,
                      size_t step, struct parsed *p)
{
    memset(p, 0, sizeof(*p));
    size_t off = 0, used;
    p->head_rc = HTTP1_MORE;
    while (p->head_rc == HTTP1_MORE && off < n) {
        size_t k = step && n - off > step ? step : n - off;
        p->head_rc = http1_head(h, data + off, k, &used);
        off += used;
    }
    p->head_used = off;
    p->body_rc = p->head_rc;
    while (p->head_rc == HTTP1_DONE && p->body_rc != HTTP1_ERROR) {
        size_t k = step && n - off > step ? step : n - off, got = 0;
        p->body_rc = http1_body(h, data + off, k, &used, p->body + p->body_len,
                                sizeof(p->body) - p->body_len, &got);
        off += used;
        p->body_len += got;
        if (p->body_rc == HTTP1_DONE || (used == 0 && got == 0))
            break;
    }
    p->used = off;
    p->status = p->head_rc == HTTP1_ERROR || p->body_rc == HTTP1_ERROR
                ? http1_error_status(h) : 0;
}

static int status_of(const char *req)
{
    struct http1 *h = http1_new(HEAD_MAX);
    struct parsed p;
    parse_one(h, req, strlen(req), 0, &p);
    int status = p.status;
    http1_free(h);
    return status;
}

/* ---- heads --------------------------------------------------------------------- */

static void test_r22_http1_get_whole_and_byte_by_byte(void **state)
{
    (void)state;
    static const char req[] =
        "GET /api/v1/flows?limit=5 HTTP/1.1\r\nHost: localhost\r\n"
        "X-Spaced:  value with spaces \t \r\nAccept: */*\r\n\r\n";
    for (size_t step = 0; step <= 1; step++) {
        struct http1 *h = http1_new(HEAD_MAX);
        assert_non_null(h);
        struct parsed p;
        parse_one(h, req, sizeof(req) - 1, step, &p);
        assert_int_equal(p.head_rc, HTTP1_DONE);
        assert_int_equal(p.body_rc, HTTP1_DONE);
        assert_int_equal(p.used, sizeof(req) - 1);
        assert_int_equal(p.body_len, 0);
        assert_true(http1_started(h));
        assert_true(http1_message_done(h));
        assert_string_equal(http1_method(h), "GET");
        assert_string_equal(http1_target(h), "/api/v1/flows?limit=5");
        assert_string_equal(http1_header(h, "host"), "localhost");
        assert_string_equal(http1_header(h, "X-SPACED"), "value with spaces");
        assert_string_equal(http1_header(h, "Accept"), "*/*");
        assert_null(http1_header(h, "Content-Length"));
        assert_int_equal(http1_content_length(h), -1);
        assert_false(http1_chunked(h));
        assert_true(http1_keep_alive(h));
        http1_free(h);
    }
}

static void test_r22_http1_not_started_by_empty_lines(void **state)
{
    (void)state;
    struct http1 *h = http1_new(HEAD_MAX);
    size_t used;
    assert_int_equal(http1_head(h, "\r\n", 2, &used), HTTP1_MORE);
    assert_false(http1_started(h));
    assert_int_equal(http1_head(h, "G", 1, &used), HTTP1_MORE);
    assert_true(http1_started(h));
    http1_free(h);
    /* empty lines cannot hold a connection open for ever */
    assert_int_equal(status_of("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n"
                               "\r\n"), 400);
}

static void test_r22_http1_space_before_colon_refused(void **state)
{
    (void)state;
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\n"
                               "Content-Length : 5\r\n\r\nhello"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n"),
                     400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"),
                     400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n"),
                     400);
}

static void test_r22_http1_obs_fold_refused(void **state)
{
    (void)state;
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n"
                               " c\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n"
                               "\tc\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
}

static void test_r22_http1_unknown_versions_refused(void **state)
{
    (void)state;
    assert_int_equal(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET /\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
}

static void test_r22_http1_request_line_and_values_strict(void **state)
{
    (void)state;
    assert_int_equal(status_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400);
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    struct http1 *h = http1_new(HEAD_MAX);
    struct parsed p;
    parse_one(h, nul, sizeof(nul) - 1, 0, &p);
    assert_int_equal(p.status, 400);
    assert_non_null(http1_error(h));
    http1_free(h);
}

static void test_r22_http1_host_rules(void **state)
{
    (void)state;
    assert_int_equal(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
                     400);
    assert_int_equal(status_of("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"),
                     400);
}

static void test_r22_http1_head_too_large_431(void **state)
{
    (void)state;
    char big[HEAD_MAX + 512];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(big + n, 'a', sizeof(big) - (size_t)n - 5);
    memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
    assert_int_equal(status_of(big), 431);
    char many[4096];
    size_t k = (size_t)snprintf(many, sizeof(many),
                                "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < HTTP1_MAX_HEADERS + 1; i++)
        k += (size_t)snprintf(many + k, sizeof(many) - k, "X%d: v\r\n", i);
    snprintf(many + k, sizeof(many) - k, "\r\n");
    assert_int_equal(status_of(many), 431);
}

/* ---- framing and smuggling ---------------------------------------------------------- */

static void test_r22_http1_cl_te_smuggling_refused(void **state)
{
    (void)state;
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4"
                               "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                               "\r\n"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:"
                               " chunked\r\nContent-Length: 4\r\n\r\n0\r\n"
                               "\r\n"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1"
                               "\r\nContent-Length: 2\r\n\r\nab"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1"
                               "\r\nContent-Length: 1\r\n\r\na"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                               "-1\r\n\r\n"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                               "1 2\r\n\r\n"), 400);
    /* 2^63: would read as a negative length, i.e. "no body" */
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                               "9223372036854775808\r\n\r\n"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                               "9223372036854775807\r\n\r\n"), 0);
}

static void test_r22_http1_transfer_encodings(void **state)
{
    (void)state;
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:"
                               " gzip, chunked\r\n\r\n0\r\n\r\n"), 501);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:"
                               " gzip\r\n\r\nabc"), 501);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:"
                               " chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "0\r\n\r\n"), 501);
    assert_int_equal(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked"
                               "\r\n\r\n0\r\n\r\n"), 400);
    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:"
                               " Chunked \r\n\r\n0\r\n\r\n"), 0);
}

static void test_r22_http1_chunked_extensions_and_trailers(void **state)
{
    (void)state;
    static const char req[] =
        "POST /as2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "4;name=value\r\nabcd\r\n6;x\r\nefghij\r\n0\r\n"
        "Authorization: Bearer trailer\r\nContent-Length: 99\r\n\r\n";
    static const size_t steps[] = { 0, 1, 3 };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        size_t step = steps[i];
        struct http1 *h = http1_new(HEAD_MAX);
        struct parsed p;
        parse_one(h, req, sizeof(req) - 1, step, &p);
        assert_int_equal(p.status, 0);
        assert_int_equal(p.body_rc, HTTP1_DONE);
        assert_int_equal(p.used, sizeof(req) - 1);
        assert_int_equal(p.body_len, 10);
        assert_memory_equal(p.body, "abcdefghij", 10);
        assert_true(http1_chunked(h));
        assert_int_equal(http1_content_length(h), -1);
        assert_null(http1_header(h, "Authorization"));
        assert_null(http1_header(h, "Content-Length"));
        assert_string_equal(http1_header(h, "Transfer-Encoding"), "chunked");
        http1_free(h);
    }
}

static void test_r22_http1_malformed_chunked_400(void **state)
{
    (void)state;
    static const char *bad[] = {
        "zz\r\nabc\r\n0\r\n\r\n",               /* not hex */
        "3\r\nabcX\r\n0\r\n\r\n",               /* no CRLF after the data */
        "fffffffffffffffffff\r\n",              /* size overflows */
        "3\r\nabc\r\n-1\r\n\r\n",               /* negative size */
        "3\rXabcYZ0\r\n\r\n",                   /* CR, CRLF not checked */
        "3;a\nb\r\nabc\r\n0\r\n\r\n",             /* bare LF in an extension */
        "3\r\nabc\r\n0\r\nX : y\r\n\r\n",          /* space in a trailer name */
        "3\r\nabc\r\n0\r\nX: y\r\n\rZ",             /* CR without LF at the end */
        "3\r\nabc\r\n0\r\nX: y\r\n a\r\n\r\n",    /* folded trailer */
        "3\r\nabc\n0\r\n\r\n",                  /* bare LF after data */
        ";x\r\nabc\r\n0\r\n\r\n",              /* no size */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n%s", bad[i]);
        assert_int_equal(status_of(req), 400);
    }
}

static void test_r22_http1_content_length_body_across_feeds(void **state)
{
    (void)state;
    static const char req[] = "POST /x HTTP/1.1\r\nHost: a\r\n"
                              "Content-Length: 11\r\n\r\nhello world";
    struct http1 *h = http1_new(HEAD_MAX);
    struct parsed p;
    parse_one(h, req, sizeof(req) - 1, 2, &p);
    assert_int_equal(p.status, 0);
    assert_int_equal(http1_content_length(h), 11);
    assert_int_equal(p.head_used, sizeof(req) - 1 - 11);
    assert_int_equal(p.body_len, 11);
    assert_memory_equal(p.body, "hello world", 11);
    assert_int_equal(p.used, sizeof(req) - 1);
    http1_free(h);
    /* a small output buffer takes the body in pieces, never more */
    h = http1_new(HEAD_MAX);
    size_t used, got, off = 0;
    assert_int_equal(http1_head(h, req, sizeof(req) - 1, &used), HTTP1_DONE);
    off = used;
    char out[4];
    assert_int_equal(http1_body(h, req + off, sizeof(req) - 1 - off, &used,
                                out, sizeof(out), &got), HTTP1_MORE);
    assert_int_equal(got, 4);
    assert_int_equal(used, 4);
    http1_free(h);
}

static void test_r22_http1_pipelined_requests_come_apart(void **state)
{
    (void)state;
    static const char reqs[] =
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nxy\r\n0\r\n\r\n"
        "GET /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    static const char *targets[] = { "/a", "/b", "/c", "/d" };
    static const char *bodies[] = { "abc", "", "xy", "" };
    struct http1 *h = http1_new(HEAD_MAX);
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        struct parsed p;
        parse_one(h, reqs + off, sizeof(reqs) - 1 - off, 0, &p);
        assert_int_equal(p.status, 0);
        assert_int_equal(p.body_rc, HTTP1_DONE);
        assert_string_equal(http1_target(h), targets[i]);
        assert_int_equal(p.body_len, strlen(bodies[i]));
        assert_memory_equal(p.body, bodies[i], p.body_len);
        assert_int_equal(http1_keep_alive(h), i < 3);
        off += p.used;
        http1_reset(h);
    }
    assert_int_equal(off, sizeof(reqs) - 1);
    http1_free(h);
}

static void test_r22_http1_keep_alive_rules(void **state)
{
    (void)state;
    static const struct { const char *req; bool keep; } cases[] = {
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false },
        { "GET / HTTP/1.0\r\n\r\n", false },
        { "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
          "Upgrade: websocket\r\n\r\n", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http1 *h = http1_new(HEAD_MAX);
        struct parsed p;
        parse_one(h, cases[i].req, strlen(cases[i].req), 0, &p);
        assert_int_equal(p.status, 0);
        assert_int_equal(http1_keep_alive(h), cases[i].keep);
        http1_free(h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r22_http1_get_whole_and_byte_by_byte),
        cmocka_unit_test(test_r22_http1_not_started_by_empty_lines),
        cmocka_unit_test(test_r22_http1_space_before_colon_refused),
        cmocka_unit_test(test_r22_http1_obs_fold_refused),
        cmocka_unit_test(test_r22_http1_unknown_versions_refused),
        cmocka_unit_test(test_r22_http1_request_line_and_values_strict),
        cmocka_unit_test(test_r22_http1_host_rules),
        cmocka_unit_test(test_r22_http1_head_too_large_431),
        cmocka_unit_test(test_r22_http1_cl_te_smuggling_refused),
        cmocka_unit_test(test_r22_http1_transfer_encodings),
        cmocka_unit_test(test_r22_http1_chunked_extensions_and_trailers),
        cmocka_unit_test(test_r22_http1_malformed_chunked_400),
        cmocka_unit_test(test_r22_http1_content_length_body_across_feeds),
        cmocka_unit_test(test_r22_http1_pipelined_requests_come_apart),
        cmocka_unit_test(test_r22_http1_keep_alive_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
