/*
 * test_ssh_agent.c - the in-process ssh-agent of the SFTP connector
 * (net/ssh_agent.c, R15/R22): the answers to identities and sign requests
 * for the armed key only, the signature algorithm a USERAUTH_REQUEST
 * names when the client sends flags 0 (rsa-sha2-256/512, never SHA-1 by
 * mistake), the refusal of every malformed or unknown
 * request, and the socket answering this process with the armed key while
 * a handshake holds it and with none afterwards.
 */
#include "testutil.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/ssh_agent.h"

static const unsigned char pub[] = {
    0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9',
    0, 0, 0, 4, 'k', 'e', 'y', '!',
};

struct seen {
    int calls;
    uint32_t flags;
    size_t n;
};

/* A signer that signs "SIG" + the data's length, noting the call. */
static int fake_sign(void *ctx, uint32_t flags, const unsigned char *data,
                     size_t n, unsigned char **sig, size_t *siglen,
                     struct error *err)
{
    struct seen *s = ctx;
    (void)data;
    (void)err;
    s->calls++;
    s->flags = flags;
    s->n = n;
    *sig = malloc(4);
    memcpy(*sig, "SIG", 3);
    (*sig)[3] = (unsigned char)n;
    *siglen = 4;
    return 0;
}

static struct seen seen;
static const struct net_ssh_signer signer = {
    pub, sizeof(pub), fake_sign, &seen, NULL,
};

static size_t put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return 4;
}

/* SIGN_REQUEST(blob, data "hello", flags) into out; its length. */
static size_t sign_req(unsigned char *out, const unsigned char *blob,
                       size_t bn, uint32_t flags)
{
    size_t o = 0;
    out[o++] = 13;
    o += put_u32(out + o, (uint32_t)bn);
    memcpy(out + o, blob, bn);
    o += bn;
    o += put_u32(out + o, 5);
    memcpy(out + o, "hello", 5);
    o += 5;
    o += put_u32(out + o, flags);
    return o;
}

static void answer(const struct net_ssh_signer *s, const unsigned char *req,
                   size_t n, unsigned char **r, size_t *rn)
{
    assert_int_equal(net_ssh_agent_answer(s, req, n, r, rn), 0);
}

static void test_r15_agent_lists_only_the_armed_key(void **state)
{
    (void)state;
    unsigned char req[1] = { 11 }, *r = NULL;
    size_t rn = 0;
    answer(NULL, req, 1, &r, &rn);
    assert_int_equal(rn, 5);                /* 12, count 0 */
    assert_int_equal(r[0], 12);
    assert_int_equal(r[4], 0);
    free(r);
    answer(&signer, req, 1, &r, &rn);
    assert_int_equal(r[0], 12);
    assert_int_equal(r[4], 1);
    assert_int_equal(r[8], sizeof(pub));
    assert_memory_equal(r + 9, pub, sizeof(pub));
    free(r);
}

static void test_r15_agent_signs_for_the_armed_key_only(void **state)
{
    (void)state;
    unsigned char req[256], *r = NULL;
    size_t rn = 0, n = sign_req(req, pub, sizeof(pub), 2);
    memset(&seen, 0, sizeof(seen));
    answer(&signer, req, n, &r, &rn);
    assert_int_equal(r[0], 14);
    assert_int_equal(r[4], 4);
    assert_memory_equal(r + 5, "SIG\x05", 4);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.flags, 2);
    free(r);
    /* not armed, or another key: failure, no signature */
    answer(NULL, req, n, &r, &rn);
    assert_int_equal(rn, 1);
    assert_int_equal(r[0], 5);
    free(r);
    unsigned char other[sizeof(pub)];
    memcpy(other, pub, sizeof(pub));
    other[sizeof(other) - 1] ^= 1;
    n = sign_req(req, other, sizeof(other), 0);
    answer(&signer, req, n, &r, &rn);
    assert_int_equal(r[0], 5);
    free(r);
    assert_int_equal(seen.calls, 1);
}

/* SIGN_REQUEST whose data is a USERAUTH_REQUEST (RFC 4252 7) naming
 * algorithm alg, with the given flags, into out; its length. */
static size_t userauth_req(unsigned char *out, const char *alg,
                           uint32_t flags)
{
    unsigned char data[200];
    size_t d = 0;
    const char *parts[] = { "0123456789abcdef0123456789abcdef", NULL,
                            "wharftest", "ssh-connection", "publickey" };
    for (size_t i = 0; i < 5; i++) {
        if (parts[i] == NULL) {
            data[d++] = 50;         /* SSH_MSG_USERAUTH_REQUEST */
            continue;
        }
        d += put_u32(data + d, (uint32_t)strlen(parts[i]));
        memcpy(data + d, parts[i], strlen(parts[i]));
        d += strlen(parts[i]);
    }
    data[d++] = 1;                  /* TRUE: with a signature */
    d += put_u32(data + d, (uint32_t)strlen(alg));
    memcpy(data + d, alg, strlen(alg));
    d += strlen(alg);
    size_t o = 0;
    out[o++] = 13;
    o += put_u32(out + o, sizeof(pub));
    memcpy(out + o, pub, sizeof(pub));
    o += sizeof(pub);
    o += put_u32(out + o, (uint32_t)d);
    memcpy(out + o, data, d);
    o += d;
    o += put_u32(out + o, flags);
    return o;
}

static void test_r15_agent_signs_the_algorithm_the_request_names(void **state)
{
    (void)state;
    unsigned char req[512], *r = NULL;
    size_t rn = 0;
    static const struct { const char *alg; uint32_t flags, want; } c[] = {
        { "rsa-sha2-256", 0, 2 }, { "rsa-sha2-512", 0, 4 },
        { "ssh-rsa", 0, 0 }, { "rsa-sha2-256", 4, 4 },  /* flags win */
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        memset(&seen, 0, sizeof(seen));
        answer(&signer, req, userauth_req(req, c[i].alg, c[i].flags), &r,
               &rn);
        assert_int_equal(r[0], 14);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.flags, c[i].want);
        free(r);
    }
}

static void test_r15_agent_refuses_malformed_requests(void **state)
{
    (void)state;
    unsigned char req[256], *r = NULL;
    size_t rn = 0, n = sign_req(req, pub, sizeof(pub), 0);
    memset(&seen, 0, sizeof(seen));
    /* every truncation, a trailing byte, a length past the end, other
     * types (add identity 17, remove all 19, lock 22, extension 27) */
    for (size_t cut = 0; cut < n; cut++) {
        answer(&signer, req, cut, &r, &rn);
        assert_int_equal(r[0], 5);
        free(r);
    }
    req[n] = 0;
    answer(&signer, req, n + 1, &r, &rn);
    assert_int_equal(r[0], 5);
    free(r);
    req[4] = 200;                           /* the key blob's length */
    answer(&signer, req, n, &r, &rn);
    assert_int_equal(r[0], 5);
    free(r);
    static const unsigned char types[] = { 17, 19, 22, 27, 11 };
    for (size_t i = 0; i < sizeof(types); i++) {
        unsigned char t[2] = { types[i], 0 };
        answer(&signer, t, 2, &r, &rn);     /* 11 with a trailing byte too */
        assert_int_equal(r[0], 5);
        free(r);
    }
    assert_int_equal(seen.calls, 0);
}

/* One request over the agent's socket (SSH_AUTH_SOCK); the reply's type
 * and count byte, or -1 when it hung up. */
static int over_socket(const unsigned char *req, size_t n, unsigned char *r,
                       size_t cap)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", getenv("SSH_AUTH_SOCK"));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    unsigned char hdr[4];
    put_u32(hdr, (uint32_t)n);
    assert_int_equal(write(fd, hdr, 4), 4);
    assert_int_equal(write(fd, req, n), (ssize_t)n);
    ssize_t got = 0, k;
    while ((size_t)got < cap && (k = read(fd, r + got, cap - (size_t)got)) > 0)
        got += k;
    close(fd);
    return got >= 5 ? 0 : -1;
}

static void test_r15_agent_socket_offers_the_key_while_armed(void **state)
{
    (void)state;
    struct error err = {0};
    unsigned char req[1] = { 11 }, r[64];
    assert_int_equal(net_ssh_agent_arm(&signer, &err), 0);
    assert_non_null(getenv("SSH_AUTH_SOCK"));
    assert_non_null(strstr(getenv("SSH_AUTH_SOCK"), "/proc/self/fd/"));
    assert_int_equal(over_socket(req, 1, r, 9), 0);
    assert_int_equal(r[4], 12);
    assert_int_equal(r[8], 1);              /* one identity */
    net_ssh_agent_disarm();
    assert_int_equal(over_socket(req, 1, r, 9), 0);
    assert_int_equal(r[4], 12);
    assert_int_equal(r[8], 0);              /* none */
    net_ssh_agent_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r15_agent_lists_only_the_armed_key),
        cmocka_unit_test(test_r15_agent_signs_for_the_armed_key_only),
        cmocka_unit_test(test_r15_agent_signs_the_algorithm_the_request_names),
        cmocka_unit_test(test_r15_agent_refuses_malformed_requests),
        cmocka_unit_test(test_r15_agent_socket_offers_the_key_while_armed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
