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
 * Keys not forwarded yet (documented in docs/architecture.md): the SFTP
 * private key (libssh2 reads it).
 */
#ifndef WHARF_KEYOP_H
#define WHARF_KEYOP_H

#include <stddef.h>

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

#endif
