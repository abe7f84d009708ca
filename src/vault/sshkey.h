/*
 * sshkey.h - SSH user keys for the key process (R15): the SFTP connector's
 * private key read from its file's text, its public half in SSH wire form,
 * and SSH signatures (what an ssh-agent answers to a sign request).
 *
 * Pure library code: no I/O, no threads, no global state. It is meant to
 * run only in the process that holds the keys (src/vault/); the EVP_PKEYs
 * it returns are real private keys, never to be handed elsewhere.
 */
#ifndef WHARF_SSHKEY_H
#define WHARF_SSHKEY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "util/error.h"
#include "util/secret.h"

/* Largest key text sshkey_parse takes (a key file, as secret_from_file
 * reads it). */
#define SSHKEY_TEXT_MAX (64 * 1024)

/* The private key in text (an uploaded key file, as sealed): OpenSSH's
 * "-----BEGIN OPENSSH PRIVATE KEY-----" format (openssh-key-v1, unencrypted
 * only: cipher "none", kdf "none"), or PEM that OpenSSL reads (PKCS#8,
 * "BEGIN RSA PRIVATE KEY", "BEGIN EC PRIVATE KEY", encrypted PKCS#8/PEM
 * opened with passphrase when given (pass may be NULL)). Types: Ed25519,
 * RSA (>= 2048 bits), ECDSA P-256/P-384/P-521. An encrypted OpenSSH key
 * is refused with an error telling how to convert it (`ssh-keygen -p -m
 * PKCS8 -f KEY` keeps a passphrase in a form Wharf reads; for Ed25519,
 * which ssh-keygen writes only as OpenSSH, `ssh-keygen -p -N '' -f KEY`).
 * Every key is checked: its type and size, its private and public parts
 * belonging together (OpenSSL's pairwise check; for OpenSSH also its
 * public key in the file). 0 and *out (caller owns, EVP_PKEY_free), or -1
 * with err (never quoting key bytes). */
int sshkey_parse(const unsigned char *text, size_t len,
                 const struct secret *pass, EVP_PKEY **out, struct error *err);

/* The key's public half in SSH wire form (RFC 4253 6.6, RFC 5656 3.1,
 * RFC 8709): string "ssh-ed25519" + string pub; string "ssh-rsa" + mpint e
 * + mpint n; string "ecdsa-sha2-nistp256" + string "nistp256" + string Q
 * (uncompressed point). Caller owns *blob (free). 0 or -1 with err. */
int sshkey_public_blob(EVP_PKEY *k, unsigned char **blob, size_t *len,
                       struct error *err);

#define SSHKEY_RSA_SHA2_256 0x02    /* ssh-agent sign flags (draft-miller-ssh-agent) */
#define SSHKEY_RSA_SHA2_512 0x04

/* An SSH signature of data by k, in SSH wire form: string algorithm name
 * + string signature blob. Ed25519: "ssh-ed25519", 64 raw bytes (RFC 8709).
 * RSA: flags SSHKEY_RSA_SHA2_512 -> "rsa-sha2-512" (SHA-512), else
 * SSHKEY_RSA_SHA2_256 -> "rsa-sha2-256", else "ssh-rsa" (SHA-1, RFC 4253),
 * all PKCS#1 v1.5 (RFC 8332). ECDSA: "ecdsa-sha2-nistpNNN", the blob being
 * mpint r + mpint s (RFC 5656 3.1.2), hash SHA-256/384/512 by curve.
 * Other flag bits are ignored, as are the RSA ones for other key types
 * (as ssh-agent does). Caller owns *sig (free). 0 or -1 with err. */
int sshkey_sign(EVP_PKEY *k, uint32_t flags, const unsigned char *data,
                size_t len, unsigned char **sig, size_t *siglen,
                struct error *err);

#endif
