/*
 * env.h (core) - making the connector environment of connectors/env.h:
 * one per flow generation (core/flow.c), one per action or OAuth callback
 * that opens a stored connector outside the engine.
 *
 * Core's side only: connectors see connectors/env.h, never this header's
 * functions that hand out the data directory.
 */
#ifndef WHARF_CORE_ENV_H
#define WHARF_CORE_ENV_H

#include <jansson.h>
#include <stddef.h>

#include "connectors/env.h"
#include "core/flowfile.h"
#include "util/error.h"

struct wharf;
struct store;
struct store_flow;
struct connector;

/* An environment over data dir w (borrowed: must outlive it). Keys are
 * loaded when first asked for. Caller owns; conn_env_free. NULL with err. */
struct conn_env *conn_env_new(struct wharf *w, struct error *err);
void conn_env_free(struct conn_env *e);

/* The data dir e was made for (core only). */
struct wharf *conn_env_wharf(const struct conn_env *e);

/* The store's row of receipt r (pointers into r; at: now). */
struct store_receipt;
void conn_receipt_row(const struct conn_receipt *r, struct store_receipt *row);

/* The store's row of held receipt h (connectors/env.h), for the outcome
 * that keeps it (struct store_outcome.kept); NULL for NULL. Owned by h. */
const struct store_receipt *conn_held_row(const struct conn_held *h);

/* Who runs e's jobs: wake(ud) is called (from any thread) when a job
 * became due now (added, or something arrived for it). NULL: nobody (the
 * CLI; the running server's engine finds it by itself). */
void conn_env_set_wake(struct conn_env *e, void (*wake)(void *), void *ud);

/* ---- secrets of connectors (core/conn_secrets.c) ---------------------------- */

/* The vault context of connector conn's sealed value key. */
void connector_seal_context(char *out, size_t n, const char *conn,
                            const char *key);

/* Flow import: read and seal every secret and file f's configs give
 * (core/flowfile.h; from the API no file is read), adding the blobs to
 * f->secrets (written by store_flow_put) and putting {"sealed": "CONN:KEY"}
 * in their place in each config (so export names them, and an import of
 * that export keeps them: a reference is looked up in st). 0 or -1 with
 * err naming the connector and key (never the content). */
int connector_secrets_seal(struct wharf *w, struct store *st,
                           struct store_flow *f, enum flow_origin origin,
                           struct error *err);

#endif
