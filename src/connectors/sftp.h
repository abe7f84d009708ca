/*
 * sftp.h - what the SFTP connector exposes beyond its connector table: the
 * parser of the directory listings a partner's server sends (untrusted
 * input, fuzzed by tests/fuzz/fuzz_sftp_listing.c), and the capture and
 * confirmation of a server's host key. Internal to the connector: the API
 * and the CLI reach the host key through the type's actions.
 */
#ifndef WHARF_SFTP_H
#define WHARF_SFTP_H

#include <stddef.h>

#include "connectors/connector.h"
#include "util/error.h"
#include "util/status.h"


/* One line of a long listing ("-rw-r--r-- 1 u g SIZE Mon DD HH:MM name",
 * as OpenSSH's server sends it), parsed in place. 0 and the fields for a
 * regular file whose name is a plain file name (no '/', not "." or "..",
 * no control characters); -1 for anything else. *name points into line;
 * tm gets "Mon DD HH:MM" (cut to tmn). */
int sftp_parse_entry(char *line, long long *size, char *tm, size_t tmn,
                     char **name);

/* ---- host keys (M5: pinned, first-use capture needs a confirm) ---------- */

struct sftp_key {
    char type[16];          /* "ED25519", "ECDSA", "RSA", "DSA" */
    char fingerprint[64];   /* "SHA256:" + 43 base64 characters, as
                               `ssh-keygen -lf` prints it */
};

/* "SHA256:base64" (padding optional) -> "SHA256:base64" unpadded into
 * out; -1 when it is not a SHA-256 fingerprint. */
int sftp_fingerprint_norm(const char *in, char *out, size_t n);

/* Connect to the server of the opened sftp connector c (through its
 * proxy) up to the key exchange and take the host key it presents,
 * refusing it: no authentication is attempted. WH_OK with *out, else
 * WH_RETRY / WH_FAIL with err saying what failed. server (n bytes) gets
 * "HOST:PORT" in any case. */
enum wh_status sftp_hostkey_capture(struct connector *c, struct sftp_key *out,
                                    char *server, size_t n, struct error *err);

/* The actions hostkey.capture and hostkey.accept of sftp connectors
 * (sftp_hostkey.c; `wharf connector NAME VERB`, /api/v1/connectors/{name}/
 * actions/{verb}). capture: the key the server presents and the confirmed
 * one; CONN_ACT_REFUSED (code host_key_mismatch) when they differ.
 * accept: args {"fingerprint": "SHA256:..."}: captured again and, when the
 * server presents exactly that key, stored as host_key_sha256 (the flow
 * generation moves: a running server picks it up). */
enum conn_act_rc sftp_hostkey_show(struct conn_action_ctx *x,
                                   struct error *err);
enum conn_act_rc sftp_hostkey_accept(struct conn_action_ctx *x,
                                     struct error *err);

#endif
