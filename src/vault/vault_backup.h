/*
 * vault_backup.h - the key block of a backup written for a backup public
 * key (R20): the backup's content key and this vault's whole keystore,
 * encrypted to a recipient certificate, so that an off-site copy needs no
 * access to the master key and only the holder of the matching private
 * key can restore it.
 *
 * The construction is OpenSSL's CMS (RFC 5652) AuthEnvelopedData with
 * AES-256-GCM (RFC 5083/5084), one recipient: an RSA certificate gets
 * KeyTransRecipientInfo with RSA-OAEP, SHA-256 and MGF1-SHA-256 (RFC
 * 8017); an EC certificate (P-256, P-384) gets KeyAgreeRecipientInfo
 * (ephemeral-static ECDH, as OpenSSL makes it). `openssl cms -decrypt`
 * opens the same block. Backups sealed for the master key do not use this
 * file: their content key is a vault_seal blob (vault.h).
 *
 * Private key objects exist only inside vault_backup_unwrap.
 */
#ifndef WHARF_VAULT_BACKUP_H
#define WHARF_VAULT_BACKUP_H

#include <stddef.h>

#include "util/error.h"

struct vault;
struct secret;

#define VAULT_BACKUP_KEY_LEN 32

/* Encrypt ckey (VAULT_BACKUP_KEY_LEN bytes) and every key of local vault
 * v to the certificate (PEM) at cert_path. *der is malloc'ed (caller
 * frees); fp gets the hex SHA-256 of the recipient's public key (DER
 * SubjectPublicKeyInfo, as `openssl pkey -pubin -outform DER | sha256sum`
 * prints it) and subject its certificate's subject (one line). */
int vault_backup_wrap(struct vault *v, const char *cert_path,
                      const struct secret *ckey, unsigned char **der,
                      size_t *dlen, char fp[65], char *subject,
                      size_t subjn, struct error *err);

/* Open a key block made by vault_backup_wrap with the unencrypted private
 * key (PEM) at key_path. Refuses at once a key whose public half does not
 * hash to fp ("written for another key"). On success *ckey (caller owns,
 * secret_free) and *v, a vault of the carried keystore (no file, no lock;
 * vault_close). */
int vault_backup_unwrap(const char *key_path, const char *fp,
                        const unsigned char *der, size_t dlen,
                        struct secret **ckey, struct vault **v,
                        struct error *err);

#endif
