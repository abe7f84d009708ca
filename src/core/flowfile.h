/*
 * flowfile.h - the files a flow document gives: certificates, keys,
 * passwords, tokens (R14, R15).
 *
 * A value that stands for a file takes one of four forms:
 *
 *   "/abs/path"           read once at import, and only by `wharf flow
 *                         import` (the CLI, run by whoever owns the data
 *                         dir); never from the API, which must not read
 *                         files on the server for its caller; never a file
 *                         inside the data directory; regular files only
 *   {"content": "text"}   given inline: PEM, a password, a token
 *   {"base64": "..."}     given inline, binary: DER, PKCS#12
 *   {"sealed": "REF"}     a value this data directory already holds, as
 *                         `flow export` writes it (secrets and keys are
 *                         never exported; REF names where they are kept)
 *
 * Secrets read this way must not be empty or only white space.
 */
#ifndef WHARF_FLOWFILE_H
#define WHARF_FLOWFILE_H

#include <jansson.h>
#include <stddef.h>

#include "util/error.h"

struct secret;

/* Who imports: the CLI may name files, the API may not. */
enum flow_origin { FLOW_FROM_CLI = 0, FLOW_FROM_API = 1 };

enum flowfile_kind {
    FLOWFILE_NONE,      /* absent */
    FLOWFILE_PATH,
    FLOWFILE_CONTENT,
    FLOWFILE_BASE64,
    FLOWFILE_SEALED,
    FLOWFILE_BAD,       /* none of the forms */
};

enum flowfile_kind flowfile_kind(const json_t *v);

/* Validate the form of v (no I/O): what names the key in the error;
 * required: absent is an error; sealed_ok: {"sealed": ..} is allowed.
 * 0 or -1 with err. */
int flowfile_check(const char *what, const json_t *v, int required,
                   int sealed_ok, struct error *err);

/* REF of {"sealed": REF}, or NULL. Borrowed from v. */
const char *flowfile_ref(const json_t *v);

/* The bytes v gives (PATH, CONTENT or BASE64; SEALED is the caller's
 * business), at most max. secret: a secret (a PATH must be a 0600 file,
 * and the value must not be blank). Caller owns; NULL with err naming
 * `what` (never the content). */
struct secret *flowfile_read(const char *what, const json_t *v,
                             enum flow_origin origin, int secret, size_t max,
                             struct error *err);

/* {"sealed": ref} (new reference). */
json_t *flowfile_sealed(const char *ref);

/* {"content": text} for PEM text (new reference). */
json_t *flowfile_content(const char *text, size_t len);

#endif
