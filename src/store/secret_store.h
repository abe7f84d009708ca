/*
 * secret_store.h - the sealed secrets of connectors (table
 * `connector_secrets` of schema migration 3, see sqlite.c). Implemented in
 * sqlite_secrets.c.
 *
 * Rows hold what vault_seal() returned, never plaintext; this layer neither
 * seals nor opens (core/conn_secrets.c and core/env.c do). Two kinds of rows, by name:
 *   - a config key ("auth.password_file"): the file's content, sealed at
 *     flow import; replaced as a whole by every import (store_flow_put);
 *   - "state:..." (e.g. "state:oauth.refresh"): what a connector obtained
 *     at run time; kept across imports while the connector exists.
 */
#ifndef WHARF_SECRET_STORE_H
#define WHARF_SECRET_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;
struct store_secret;

/* Insert or replace one row (updated_at = now). */
int store_csecret_put(struct store *s, const char *connector, const char *name,
                      const void *blob, size_t len, int64_t expires_at,
                      struct error *err);

/* Read one row: 1 and *blob malloc'ed (caller frees) when found, 0 when
 * not, -1 on error. expires_at may be NULL. */
int store_csecret_get(struct store *s, const char *connector, const char *name,
                      unsigned char **blob, size_t *len, int64_t *expires_at,
                      struct error *err);

/* Delete one row (name) or every row of connector (name NULL). */
int store_csecret_del(struct store *s, const char *connector, const char *name,
                      struct error *err);

/* Names of connector's rows that start with prefix, oldest first; *names
 * malloc'ed (each name too; caller frees all). */
int store_csecret_names(struct store *s, const char *connector,
                        const char *prefix, char ***names, size_t *n,
                        struct error *err);

/* Inside store_flow_put's transaction, after the connectors were written:
 * drop every non-state row and every row of a connector that no longer
 * exists, then insert rows[n]. */
int store_csecret_replace(struct store *s, const struct store_secret *rows,
                          size_t n, struct error *err);

#endif
