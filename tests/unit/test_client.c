/*
 * test_client.c - the one outbound transport (net/client.h) moving bodies
 * both ways (R3, R11; the isolation issue's step 3), against a small
 * HTTP/1.1 peer on 127.0.0.1 in a thread of this test (plain HTTP: the
 * client allows it only with insecure; TLS is covered by the e2e tests).
 *
 *   - a request body streams from the read function, its exact length;
 *   - one of unknown length (NET_CLIENT_BODY_STREAMED) goes chunked, every
 *     byte, with its final 0-chunk; a read that fails midway aborts it
 *     with its error and the peer never sees that final chunk;
 *   - a response body streams to the write function, every byte in order,
 *     also one far larger than any cap (with and without Content-Length);
 *   - a response kept in memory is kept whole up to its cap, and one past
 *     the cap is an error that says so, not a silent truncation (both
 *     when the peer announces its length and when it does not);
 *   - a write function that fails aborts the request with its error.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net/client.h"

/* ---- the peer ------------------------------------------------------------------- */

struct peer {
    int fd;                     /* listening */
    int port;
    pthread_t thread;
    /* what it answers */
    size_t body_len;
    int chunked;
    /* what it saw */
    long long got_body;
    char method[16];
    int req_chunked, req_length;    /* Transfer-Encoding: chunked; a
                                     * Content-Length */
    int got_end;                    /* a chunked body's final chunk */
};

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 31 + 7) & 0xff);
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The data bytes of the chunked body in b[0..n): 1 once its final chunk
 * (and the empty line after it) is in, 0 while more is to come. */
static int chunked_scan(const char *b, size_t n, long long *data)
{
    size_t i = 0;
    *data = 0;
    for (;;) {
        const char *nl = memmem(b + i, n - i, "\r\n", 2);
        if (nl == NULL)
            return 0;
        size_t k = strtoul(b + i, NULL, 16);
        i = (size_t)(nl - b) + 2;
        if (k == 0)
            return memmem(b + i, n - i, "\r\n", 2) != NULL;
        if (n - i < k + 2)
            return 0;
        *data += (long long)k;
        i += k + 2;
    }
}

/* A chunked body after the head (the first have bytes of it in first):
 * read until its final chunk or the end of the connection. */
static void peer_read_chunked(struct peer *p, int c, const char *first,
                              size_t have)
{
    size_t cap = 8u << 20, n = have;
    char *b = malloc(cap);
    assert_non_null(b);
    memcpy(b, first, have);
    long long data = 0;
    while (!(p->got_end = chunked_scan(b, n, &data)) && n < cap) {
        ssize_t r = recv(c, b + n, cap - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    p->got_body = data;
    free(b);
}

/* Read the head, then Content-Length bytes of body (counted). */
static void peer_read_request(struct peer *p, int c)
{
    char head[8192];
    size_t n = 0;
    char *end = NULL;
    while (n < sizeof(head) - 1 && end == NULL) {
        ssize_t r = recv(c, head + n, sizeof(head) - 1 - n, 0);
        if (r <= 0)
            return;
        n += (size_t)r;
        head[n] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    if (end == NULL)
        return;
    sscanf(head, "%15s", p->method);
    long long want = 0;
    const char *cl = strcasestr(head, "\r\nContent-Length:");
    p->req_length = cl != NULL && cl < end;
    if (cl)
        want = strtoll(cl + 17, NULL, 10);
    long long have = (long long)(n - (size_t)(end + 4 - head));
    const char *te = strcasestr(head, "\r\nTransfer-Encoding: chunked");
    if (te != NULL && te < end) {
        p->req_chunked = 1;
        peer_read_chunked(p, c, end + 4, (size_t)have);
        return;
    }
    char buf[65536];
    while (have < want) {
        ssize_t r = recv(c, buf, sizeof(buf), 0);
        if (r <= 0)
            break;
        have += r;
    }
    p->got_body = have;
}

static void peer_answer(struct peer *p, int c)
{
    char head[256];
    int n = p->chunked
        ? snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nTransfer-Encoding:"
                   " chunked\r\nConnection: close\r\n\r\n")
        : snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: "
                   "%zu\r\nConnection: close\r\n\r\n", p->body_len);
    if (send_all(c, head, (size_t)n) < 0)
        return;
    unsigned char buf[16384];
    for (size_t off = 0; off < p->body_len;) {
        size_t k = p->body_len - off < sizeof(buf) ? p->body_len - off
                                                   : sizeof(buf);
        for (size_t i = 0; i < k; i++)
            buf[i] = pattern(off + i);
        if (p->chunked) {
            n = snprintf(head, sizeof(head), "%zx\r\n", k);
            if (send_all(c, head, (size_t)n) < 0)
                return;
        }
        if (send_all(c, buf, k) < 0 || (p->chunked &&
                                        send_all(c, "\r\n", 2) < 0))
            return;         /* the client stopped reading: fine */
        off += k;
    }
    if (p->chunked)
        send_all(c, "0\r\n\r\n", 5);
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    int c = accept(p->fd, NULL, NULL);
    if (c >= 0) {
        peer_read_request(p, c);
        peer_answer(p, c);
        close(c);
    }
    return NULL;
}

/* A listening socket on a free port of 127.0.0.1 for p. */
static void peer_listen(struct peer *p)
{
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(p->fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(p->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(p->fd, 4), 0);
    assert_int_equal(getsockname(p->fd, (struct sockaddr *)&a, &len), 0);
    p->port = ntohs(a.sin_port);
}

static void peer_start(struct peer *p, size_t body_len, int chunked)
{
    memset(p, 0, sizeof(*p));
    p->body_len = body_len;
    p->chunked = chunked;
    peer_listen(p);
    assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_stop(struct peer *p)
{
    pthread_join(p->thread, NULL);
    close(p->fd);
}

/* A peer that keeps its first connection alive after one answer, then
 * closes it when the second request has arrived, unanswered (a server
 * that closed an idle kept-alive connection as the request went out),
 * and answers on the next connection it is given. */
static void peer_answer_keep(int c)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    send_all(c, ok, sizeof(ok) - 1);
}

static void *peer_drop_main(void *arg)
{
    struct peer *p = arg;
    int c = accept(p->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    peer_read_request(p, c);
    peer_answer_keep(c);
    peer_read_request(p, c);                    /* the second request */
    close(c);
    p->got_body = 0;
    struct timeval tv = { 5, 0 };
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if ((c = accept(p->fd, NULL, NULL)) >= 0) {  /* the client's retry */
        peer_read_request(p, c);
        peer_answer_keep(c);
        close(c);
    }
    return NULL;
}

/* ---- the client side ---------------------------------------------------------------- */

struct source {
    size_t len, off;
    int streamed;               /* NET_CLIENT_BODY_STREAMED */
    size_t fail_at;             /* 0: never */
};

static ssize_t source_read(void *ud, void *buf, size_t n, struct error *err)
{
    struct source *s = ud;
    if (s->fail_at && s->off >= s->fail_at)
        return error_set(err, "the packaging failed");
    if (s->fail_at && n > s->fail_at - s->off)
        n = s->fail_at - s->off;
    if (n > s->len - s->off)
        n = s->len - s->off;
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)buf)[i] = pattern(s->off + i);
    s->off += n;
    return (ssize_t)n;
}

struct sink {
    size_t got;
    int in_order;
    size_t fail_after;          /* 0: never */
};

static int sink_write(void *ud, const void *buf, size_t n, struct error *err)
{
    struct sink *k = ud;
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)buf)[i] != pattern(k->got + i))
            k->in_order = 0;
    k->got += n;
    if (k->fail_after && k->got > k->fail_after)
        return error_set(err, "the sink is full");
    return 0;
}

static enum wh_status request(struct peer *p, const char *method,
                              struct source *src, struct sink *k,
                              size_t max, struct net_client_resp *resp,
                              struct error *err)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", p->port);
    struct net_client_opts o = { .insecure = 1, .max_response = max,
                                 .timeout_ms = 60000 };
    struct net_client_req r = { .method = method, .url = url,
        .body_len = !src ? -1 : src->streamed ? NET_CLIENT_BODY_STREAMED
                                              : (int64_t)src->len,
        .read = src ? source_read : NULL, .read_ud = src,
        .write = k ? sink_write : NULL, .write_ud = k };
    return net_client_request(&o, &r, resp, err);
}

static int source_rewind(void *ud)
{
    ((struct source *)ud)->off = 0;
    return 0;
}

/* One POST on a kept-alive connection, then another that the peer drops
 * unanswered: with a rewind the client sends it again, whole, on a new
 * connection; without one the request fails (curl cannot send the body
 * again). */
static enum wh_status post_twice(int rewind, struct peer *p,
                                 struct error *err)
{
    char url[64];
    memset(p, 0, sizeof(*p));
    peer_listen(p);
    assert_int_equal(pthread_create(&p->thread, NULL, peer_drop_main, p),
                     0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", p->port);
    struct net_client_opts o = { .insecure = 1, .timeout_ms = 60000 };
    struct source src = { .len = 10000 };
    struct net_client_req r = { .method = "POST", .url = url,
        .body_len = (int64_t)src.len, .read = source_read, .read_ud = &src,
        .rewind = rewind ? source_rewind : NULL };
    struct net_client_resp resp;
    enum wh_status st = net_client_request(&o, &r, &resp, err);
    net_client_resp_free(&resp);
    assert_int_equal(st, WH_OK);
    src.off = 0;
    st = net_client_request(&o, &r, &resp, err);
    net_client_resp_free(&resp);
    peer_stop(p);
    return st;
}

static void test_m4_request_on_a_closed_kept_alive_connection_is_sent_again(
    void **state)
{
    (void)state;
    struct peer p;
    struct error err = {0};
    enum wh_status st = post_twice(1, &p, &err);
    if (st != WH_OK)
        fail_msg("sent again on a new connection: %s", err.msg);
    assert_int_equal(p.got_body, 10000);
    err = (struct error){0};
    assert_int_not_equal(post_twice(0, &p, &err), WH_OK);
    assert_true(err.msg[0] != '\0');
}

static void test_r11_request_body_streams_with_its_length(void **state)
{
    (void)state;
    struct peer p;
    struct source src = { .len = 3u << 20 };
    struct net_client_resp resp;
    struct error err = {0};
    peer_start(&p, 2, 0);
    assert_int_equal(request(&p, "POST", &src, NULL, 0, &resp, &err), WH_OK);
    peer_stop(&p);
    assert_int_equal(resp.status, 200);
    assert_string_equal(p.method, "POST");
    assert_int_equal(p.got_body, (long long)(3u << 20));
    assert_int_equal(src.off, src.len);
    net_client_resp_free(&resp);
}

static void test_r11_streamed_body_goes_chunked_to_its_end(void **state)
{
    (void)state;
    struct peer p;
    struct source src = { .len = 3u << 20, .streamed = 1 };
    struct net_client_resp resp;
    struct error err = {0};
    peer_start(&p, 2, 0);
    assert_int_equal(request(&p, "POST", &src, NULL, 0, &resp, &err), WH_OK);
    peer_stop(&p);
    assert_int_equal(resp.status, 200);
    assert_true(p.req_chunked);
    assert_false(p.req_length);
    assert_true(p.got_end);
    assert_int_equal(p.got_body, (long long)(3u << 20));
    net_client_resp_free(&resp);
}

static void test_r11_streamed_body_failing_read_never_ends(void **state)
{
    (void)state;
    struct peer p;
    struct source src = { .len = 3u << 20, .streamed = 1,
                          .fail_at = 1u << 20 };
    struct net_client_resp resp;
    struct error err = {0};
    peer_start(&p, 2, 0);
    assert_int_equal(request(&p, "POST", &src, NULL, 0, &resp, &err),
                     WH_FAIL);
    peer_stop(&p);
    if (strstr(err.msg, "the packaging failed") == NULL)
        fail_msg("\"%s\"", err.msg);
    assert_true(p.req_chunked);
    assert_false(p.got_end);        /* no final 0-chunk: incomplete */
    assert_true(p.got_body <= (long long)(1u << 20));
    net_client_resp_free(&resp);
}

static void test_r11_response_body_streams_whole(void **state)
{
    (void)state;
    for (int chunked = 0; chunked < 2; chunked++) {
        struct peer p;
        struct sink k = { .in_order = 1 };
        struct net_client_resp resp;
        struct error err = {0};
        peer_start(&p, 5u << 20, chunked);      /* far past any cap */
        assert_int_equal(request(&p, "GET", NULL, &k, 1000, &resp, &err),
                         WH_OK);
        peer_stop(&p);
        assert_int_equal(k.got, 5u << 20);
        assert_true(k.in_order);
        assert_null(resp.body);
        net_client_resp_free(&resp);
    }
}

static void test_r11_kept_response_whole_up_to_its_cap(void **state)
{
    (void)state;
    struct peer p;
    struct net_client_resp resp;
    struct error err = {0};
    peer_start(&p, 1000, 0);
    assert_int_equal(request(&p, "GET", NULL, NULL, 1000, &resp, &err),
                     WH_OK);
    peer_stop(&p);
    assert_int_equal(resp.len, 1000);
    for (size_t i = 0; i < resp.len; i++)
        assert_int_equal((unsigned char)resp.body[i], pattern(i));
    net_client_resp_free(&resp);
}

static void test_r11_response_past_its_cap_is_an_error(void **state)
{
    (void)state;
    for (int chunked = 0; chunked < 2; chunked++) {
        struct peer p;
        struct net_client_resp resp;
        struct error err = {0};
        peer_start(&p, 1001, chunked);
        assert_int_equal(request(&p, "GET", NULL, NULL, 1000, &resp, &err),
                         WH_FAIL);
        peer_stop(&p);
        if (strstr(err.msg, "larger than 1000 bytes") == NULL)
            fail_msg("chunked=%d: \"%s\"", chunked, err.msg);
        net_client_resp_free(&resp);
    }
}

static void test_r11_failing_write_aborts_with_its_error(void **state)
{
    (void)state;
    struct peer p;
    struct sink k = { .in_order = 1, .fail_after = 100000 };
    struct net_client_resp resp;
    struct error err = {0};
    peer_start(&p, 1u << 20, 0);
    assert_int_equal(request(&p, "GET", NULL, &k, 0, &resp, &err), WH_FAIL);
    peer_stop(&p);
    assert_non_null(strstr(err.msg, "the sink is full"));
    assert_true(k.got < (1u << 20));
    net_client_resp_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r11_request_body_streams_with_its_length),
        cmocka_unit_test(test_r11_streamed_body_goes_chunked_to_its_end),
        cmocka_unit_test(test_r11_streamed_body_failing_read_never_ends),
        cmocka_unit_test(test_r11_response_body_streams_whole),
        cmocka_unit_test(test_r11_kept_response_whole_up_to_its_cap),
        cmocka_unit_test(test_r11_response_past_its_cap_is_an_error),
        cmocka_unit_test(test_r11_failing_write_aborts_with_its_error),
        cmocka_unit_test(
            test_m4_request_on_a_closed_kept_alive_connection_is_sent_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
