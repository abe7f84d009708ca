/*
 * fuzz_ssh_agent.c - libFuzzer target for the in-process ssh-agent's
 * request parser (src/net/ssh_agent.c, net_ssh_agent_answer): what
 * libssh2, or anything else that reached the socket, sends.
 *
 * Input: one agent message without its length prefix, answered twice:
 * with no key armed and with a fixed key armed. Oracles beyond the
 * sanitizers: every answer is FAILURE (5), IDENTITIES_ANSWER (12) or
 * SIGN_RESPONSE (14); a SIGN_RESPONSE comes only with the key armed and
 * only for a request naming exactly that key; nothing is signed
 * otherwise; an identities answer lists the armed key alone, or nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/ssh_agent.h"

static const unsigned char pub[] = {
    0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9',
    0, 0, 0, 4, 'k', 'e', 'y', '!',
};
static int signed_now;

static int fake_sign(void *ctx, uint32_t flags, const unsigned char *data,
                     size_t n, unsigned char **sig, size_t *siglen,
                     struct error *err)
{
    (void)ctx;
    (void)flags;
    (void)data;
    (void)err;
    if (n == 0)
        abort();
    signed_now = 1;
    *sig = malloc(1);
    if (*sig == NULL)
        return -1;
    **sig = 0;
    *siglen = 1;
    return 0;
}

static void check(const struct net_ssh_signer *s, const uint8_t *d, size_t n)
{
    unsigned char *r = NULL;
    size_t rn = 0;
    signed_now = 0;
    if (net_ssh_agent_answer(s, d, n, &r, &rn) != 0)
        return;
    if (rn == 0 || (r[0] != 5 && r[0] != 12 && r[0] != 14))
        abort();
    if (r[0] == 14 && (s == NULL || !signed_now || n < 5 + sizeof(pub) ||
                       memcmp(d + 5, pub, sizeof(pub)) != 0))
        abort();
    if (r[0] != 14 && signed_now)
        abort();
    if (r[0] == 12 && rn != (s ? 5 + 4 + sizeof(pub) + 4 + 5 : 5))
        abort();
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static const struct net_ssh_signer signer = {
        pub, sizeof(pub), fake_sign, NULL, NULL,
    };
    check(NULL, d, n);
    check(&signer, d, n);
    return 0;
}
