/*
 * pg_secrets.h - the PostgreSQL statements of secret_store.h
 * (pg_secrets.c). Included only by sqlite_secrets.c (which hands each
 * public entry point over on a PostgreSQL store) and pg_secrets.c.
 * Behaviour, return codes and ownership are those secret_store.h documents
 * for the function of the same name. (store_csecret_replace has no twin:
 * pg.c replaces the imported rows inside its own store_flow_put.)
 */
#ifndef WHARF_PG_SECRETS_H
#define WHARF_PG_SECRETS_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct pg_store;

int pgs_csecret_put(struct pg_store *p, const char *connector,
                    const char *name, const void *blob, size_t len,
                    int64_t expires_at, struct error *err);
int pgs_csecret_get(struct pg_store *p, const char *connector,
                    const char *name, unsigned char **blob, size_t *len,
                    int64_t *expires_at, struct error *err);
int pgs_csecret_del(struct pg_store *p, const char *connector,
                    const char *name, struct error *err);
int pgs_csecret_names(struct pg_store *p, const char *connector,
                      const char *prefix, char ***names, size_t *n,
                      struct error *err);

#endif
