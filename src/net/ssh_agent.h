/*
 * ssh_agent.h - the ssh-agent that libssh2 (curl's sftp scheme) asks for
 * an SFTP connector's signature, so that no SSH private key is ever in
 * this process (R15, R22).
 *
 * libssh2 reads a private key only from a file or from an agent, and curl
 * offers it nothing else; an agent is the one way to keep the key in the
 * key process. The agent lives in this process: a unix socket (its path in
 * SSH_AUTH_SOCK, answered only for connections from this very process), a
 * thread speaking the agent protocol (draft-miller-ssh-agent: identities
 * and sign requests, nothing else), and one identity at a time: the key of
 * the connector whose SSH handshake is under way (net_ssh_agent_arm, held
 * from before the connection until curl starts the request, so another
 * connector's handshake waits and never sees this key). A signature is
 * made by the signer's function (the key process under serve).
 */
#ifndef WHARF_NET_SSH_AGENT_H
#define WHARF_NET_SSH_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* An SSH user key held elsewhere: its public key in SSH wire form and a
 * function that makes an SSH signature with it (algorithm name + blob, as
 * an agent's SIGN_RESPONSE carries it; *sig malloc'ed, caller frees).
 * Whoever made it frees it: release(ctx), then the struct. */
struct net_ssh_signer {
    const unsigned char *pub;
    size_t publen;
    int (*sign)(void *ctx, uint32_t flags, const unsigned char *data,
                size_t n, unsigned char **sig, size_t *siglen,
                struct error *err);
    void *ctx;
    void (*release)(void *ctx);     /* frees ctx (and pub), or NULL */
};

/* Make the agent's socket "ssh-agent.sock" in folder dir (serve: the data
 * dir's state/ folder, before the sandbox; NULL: a new private folder
 * under $TMPDIR or /tmp, removed by net_ssh_agent_stop) and point
 * SSH_AUTH_SOCK at it. Call while this process has one thread (setenv).
 * A second call does nothing. 0, or -1 with err. */
int net_ssh_agent_start(const char *dir, struct error *err);

/* Stop answering, remove the socket (and a folder of its own). */
void net_ssh_agent_stop(void);

/* Offer s (borrowed until disarm) as the agent's only identity; waits
 * while another handshake has the agent. Starts the agent (in a private
 * folder) and its thread when they are not running. 0, or -1 with err
 * (nothing armed). Disarm from the same thread. */
int net_ssh_agent_arm(const struct net_ssh_signer *s, struct error *err);
void net_ssh_agent_disarm(void);

/* The answer to one agent request (req: the message without its length
 * prefix) for identity s (NULL: none): *reply malloc'ed (caller frees),
 * without its length prefix. Malformed or unknown requests get
 * SSH_AGENT_FAILURE. 0, or -1 when out of memory. (For the fuzz target.) */
int net_ssh_agent_answer(const struct net_ssh_signer *s,
                         const unsigned char *req, size_t n,
                         unsigned char **reply, size_t *rlen);

#endif
