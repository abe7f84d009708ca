/*
 * sealed_store.h - the vault-sealed values the database keeps, seen as one
 * list per kind, for key rotation (core/rotate.c re-seals each under the new
 * master key). Implemented in sqlite_sealed.c over the tables of the
 * migrations that hold them (sqlite.c):
 *   - STORE_SEALED_PROFILE_KEY  certificates.key_sealed (migration 4): the
 *     AS2 profile's private keys; owner = certificate owner, name = its id;
 *   - STORE_SEALED_CONNECTOR    connector_secrets.blob (migration 3): the
 *     secret files of connectors and what they obtained at run time (OAuth
 *     tokens, pending authorizations); owner = connector, name = row name;
 *   - STORE_SEALED_TOTP         users.totp_sealed (migration 2): TOTP seeds;
 *     owner = user name, name = the user's id in decimal;
 *   - STORE_SEALED_JOB_DATA     jobs.data (migration 10): what a job was
 *     given (an MDN to send, what a waiting job checks); owner = connector,
 *     name = the job's id;
 *   - STORE_SEALED_JOB_INPUT    jobs.input (migration 10): what arrived for
 *     a job (an asynchronous MDN); owner = connector, name = the job's id.
 *     Both list the values of every job, including those its kind keeps
 *     in the clear (core/jobs.h: JOBS_CLEAR_TAG), which rotation skips.
 * A setting that holds a sealed value (oidc_client_secret, as hex) is read
 * and written with store_setting_get/set.
 *
 * Rows hold blobs as vault_seal made them: this layer never sees plaintext
 * and knows nothing of seal contexts (the rotation derives them from kind,
 * owner and name). Ownership: rows filled by store_sealed_list own their
 * strings and blobs (free with store_sealed_free).
 */
#ifndef WHARF_SEALED_STORE_H
#define WHARF_SEALED_STORE_H

#include <stddef.h>

#include "util/error.h"

struct store;

enum store_sealed_kind {
    STORE_SEALED_PROFILE_KEY,
    STORE_SEALED_CONNECTOR,
    STORE_SEALED_TOTP,
    STORE_SEALED_JOB_DATA,
    STORE_SEALED_JOB_INPUT,
    STORE_SEALED_KINDS
};

struct store_sealed {
    enum store_sealed_kind kind;
    char *owner;
    char *name;
    unsigned char *blob;
    size_t len;
};

/* Every sealed value of kind, in a stable order. *out is malloc'ed (NULL
 * when *n is 0): free with store_sealed_free(*out, *n). */
int store_sealed_list(struct store *s, enum store_sealed_kind kind,
                      struct store_sealed **out, size_t *n,
                      struct error *err);
void store_sealed_free(struct store_sealed *rows, size_t n);

/* Called by store_sealed_rewrite inside its transaction for one row: set
 * *blob (malloc'ed; the store frees it) and *len and return 1 to replace
 * the row's blob, return 0 to leave the row as it is, or -1 (err set) to
 * roll the whole batch back. */
typedef int (*store_sealed_fn)(void *arg, const struct store_sealed *row,
                               unsigned char **blob, size_t *len,
                               struct error *err);

/* In one IMMEDIATE transaction, call fn for rows[0..n) and write each new
 * blob, but only where the row still holds rows[i].blob (a value changed
 * since it was listed is left alone and not counted). *replaced gets the
 * number of rows written. 0, or -1 with nothing written. */
int store_sealed_rewrite(struct store *s, const struct store_sealed *rows,
                         size_t n, store_sealed_fn fn, void *arg,
                         size_t *replaced, struct error *err);

#endif
