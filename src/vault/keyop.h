/*
 * keyop.h - private keys by reference (R15, R22): the only way code outside
 * src/vault/ gets to sign or decrypt with a private key.
 *
 * The EVP_PKEYs returned here hold the public key and a handle; OpenSSL's
 * CMS and TLS code use them unchanged (EVP_DigestSign, EVP_PKEY_decrypt,
 * CMS_add1_signer, SSL_CTX_use_PrivateKey...), and Wharf's OpenSSL provider
 * (vault/keyprov.c) forwards each signature and decryption to the process
 * holding the key: the key process under `wharf serve` (vault/keyproc.c),
 * otherwise a table inside src/vault/ of this process. Keys are refused
 * the operations they were not loaded for: a TLS key and an http
 * connector's client certificate key only sign; an AS2 profile key signs
 * and decrypts.
 *
 * An SFTP connector's SSH user key is no EVP_PKEY at all: it is a
 * struct vault_ssh_key (a handle and the SSH public key blob) that makes
 * SSH signatures for net/ssh_agent.c, the ssh-agent that libssh2 asks.
 */
#ifndef WHARF_KEYOP_H
#define WHARF_KEYOP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "util/error.h"

struct vault;

/* The private key sealed in blob under context ("profile-key:ID": the AS2
 * profile keys of core/partners.c) as a handle key that signs and
 * decrypts. The vault opens it into its key table; the caller never sees
 * its bytes. Loading the same context and blob again gives the same
 * handle. Caller owns the result (EVP_PKEY_free). */
EVP_PKEY *vault_key_load(struct vault *v, const char *context,
                         const unsigned char *blob, size_t len,
                         struct error *err);

/* The TLS private key in the PEM file at path (an absolute path) as a
 * handle key that only signs (handshakes). Under `wharf serve` the key
 * process read the configured file at its start and only that path is
 * answered; elsewhere the file is read into this process's vault key
 * table. A file others can read is refused. Caller owns the result. */
EVP_PKEY *vault_tls_key(const char *path, struct error *err);

/* The client certificate key of http connector conn: its "auth.key"
 * secret as sealed in blob (context "connector:CONN:auth.key",
 * core/conn_secrets.c), as a handle key that only signs (TLS client
 * authentication). The vault opens it into its key table (the key
 * process's under `wharf serve`, else this process's, like the other
 * keys); the caller never sees its bytes. The same connector and key
 * (even sealed anew by another import) give the same handle; a table
 * holds at most 64 such keys. Caller owns
 * the result (EVP_PKEY_free). */
EVP_PKEY *vault_client_key(struct vault *v, const char *conn,
                           const unsigned char *blob, size_t len,
                           struct error *err);

/* The SSH user key of SFTP connector conn: its "key_file" secret as sealed
 * in blob (context "connector:CONN:key_file") and, when plen > 0, its
 * "key_passphrase_file" sealed in pass. Both are opened only where the
 * keys live (the key process under serve); the caller gets a handle and
 * the public key. Caller owns the result (vault_ssh_key_free). */
struct vault_ssh_key;
struct vault_ssh_key *vault_ssh_key(struct vault *v, const char *conn,
                                    const unsigned char *blob, size_t len,
                                    const unsigned char *pass, size_t plen,
                                    struct error *err);

/* The key's public half in SSH wire form (borrowed from k). */
const unsigned char *vault_ssh_key_public(const struct vault_ssh_key *k,
                                          size_t *len);

/* An SSH signature (algorithm name + signature blob, the body of an
 * ssh-agent SIGN_RESPONSE) of data (at most 8192 bytes) by k; flags are
 * the agent's sign flags (RSA: SHA-256 2, SHA-512 4). *sig malloc'ed,
 * caller frees. 0 or -1. */
int vault_ssh_sign(const struct vault_ssh_key *k, uint32_t flags,
                   const unsigned char *data, size_t n, unsigned char **sig,
                   size_t *siglen, struct error *err);

void vault_ssh_key_free(struct vault_ssh_key *k);

#endif
