/*
 * kms.h - the keystore wrapped by an external key management service
 * (R15): with wharf.conf's kms_command set, the keystore file holds the
 * master and audit keys encrypted (AES-256-GCM) under a key-encryption
 * key (KEK) that only the KMS can unwrap, so the file alone gives nothing.
 *
 * The command is a program (an absolute path, run without a shell, not
 * writable by group or others) that speaks lines on stdin and stdout:
 *
 *   KMS_COMMAND wrap     stdin: the KEK, 64 hex digits
 *                        stdout: one line, the wrapped KEK (printable
 *                        ASCII without spaces, at most KMS_BLOB_MAX bytes)
 *   KMS_COMMAND unwrap   stdin: that line; stdout: the 64 hex digits
 *
 * exit 0 on success; otherwise its first line on stderr is the reason
 * Wharf reports. It has KMS_TIMEOUT_MS to answer. Each keystore write
 * draws a new KEK and wraps it (one `wrap`); each load unwraps once.
 *
 * Sealed keystore file (text):
 *   wharf-keystore-kms 1
 *   kek <the wrapped KEK>
 *   body <base64 of nonce (12) || AES-256-GCM(keystore text) || tag (16)>
 * with the first two lines (LF included) as the associated data.
 *
 * One data dir per process: the command is process-wide (kms_set, from
 * wharf.conf when the data dir is opened).
 */
#ifndef WHARF_VAULT_KMS_H
#define WHARF_VAULT_KMS_H

#include <stddef.h>

#include "util/error.h"

#define KMS_MAGIC "wharf-keystore-kms 1"
#define KMS_BLOB_MAX 4096
#define KMS_TIMEOUT_MS 30000

/* Use command (copied; "" or NULL: none) for this process's keystore. */
void kms_set(const char *command);

/* The command set, "" when none. */
const char *kms_command(void);

/* A kms_command value as wharf.conf gives it: an absolute path to a
 * regular executable file that group and others cannot write. 0 or -1. */
int kms_check(const char *command, struct error *err);

/* Whether file[0..len) is a sealed keystore (its first line). */
int kms_is_sealed(const char *file, size_t len);

/* Seal keystore text[0..len) with a new KEK wrapped by the command into
 * out (at most outsz bytes); *outlen its length. 0 or -1 with err. */
int kms_seal(const char *text, size_t len, char *out, size_t outsz,
             size_t *outlen, struct error *err);

/* Open the sealed keystore file[0..len) of path: the KEK unwrapped by the
 * command, the text decrypted into out (NUL-terminated, at most outsz
 * bytes with the NUL); *outlen its length. 0 or -1 with err. */
int kms_open(const char *file, size_t len, const char *path, char *out,
             size_t outsz, size_t *outlen, struct error *err);

#endif
