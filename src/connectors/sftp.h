/*
 * sftp.h - what the SFTP connector exposes beyond its connector table: the
 * parser of the directory listings a partner's server sends (untrusted
 * input, fuzzed by tests/fuzz/fuzz_sftp_listing.c), and the capture and
 * confirmation of a server's host key.
 */
#ifndef WHARF_SFTP_H
#define WHARF_SFTP_H

#include <stddef.h>

#include "util/error.h"
#include "util/status.h"

struct connector;
struct store;
struct wharf;

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
 * WH_RETRY / WH_FAIL with err saying what failed. */
enum wh_status sftp_hostkey_capture(struct connector *c, struct sftp_key *out,
                                    struct error *err);

/* What `wharf connector hostkey` and /api/v1/connectors/{name}/hostkey
 * do (sftp_hostkey.c), on the stored connector called name. */
enum sftp_hostkey_rc {
    SFTP_HOSTKEY_OK = 0,
    SFTP_HOSTKEY_UNREACHABLE,   /* no key captured: err says why */
    SFTP_HOSTKEY_MISMATCH,      /* the server presents another key */
    SFTP_HOSTKEY_NOT_FOUND,     /* no connector of that name */
    SFTP_HOSTKEY_NOT_SFTP,      /* it is not an sftp connector */
    SFTP_HOSTKEY_INVALID,       /* the fingerprint given is malformed */
    SFTP_HOSTKEY_CHANGED,       /* its config changed meanwhile */
    SFTP_HOSTKEY_ERROR = -1,    /* store, memory, ... */
};

struct sftp_hostkey {
    struct sftp_key key;        /* what the server presents now */
    char confirmed[64];         /* its stored host_key_sha256, "" if none */
    char server[300];           /* "HOST:PORT" */
};

/* Capture the host key the server of connector name presents (nothing
 * is stored). OK: out filled (MISMATCH too, when a confirmed key differs:
 * err names both). */
int sftp_hostkey_show(struct wharf *w, struct store *st, const char *name,
                      struct sftp_hostkey *out, struct error *err);

/* The operator confirmed fingerprint: capture the key again and, when the
 * server presents exactly that one, store it as the connector's
 * host_key_sha256 (the flow generation moves: a running server picks it
 * up). out->confirmed holds the key confirmed before. */
int sftp_hostkey_accept(struct wharf *w, struct store *st, const char *name,
                        const char *fingerprint, struct sftp_hostkey *out,
                        struct error *err);

#endif
