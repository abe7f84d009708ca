/*
 * flow.h - flows: connectors linked output-to-input (M1).
 *
 * Two halves. The document half parses and validates the import/export JSON
 *   {"connectors":[{"name":..,"type":..,"config":{..}}],"links":[["a","b"]]}
 * completely before anything is changed (flow_parse), and writes it back
 * (flow_export). The runtime half (struct flow) holds the opened connectors
 * of the stored flow for the engine, and answers "where does a message go
 * after connector X".
 */
#ifndef WHARF_FLOW_H
#define WHARF_FLOW_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/flowfile.h"
#include "store/store.h"
#include "util/error.h"

struct wharf;
struct connector;

#define FLOW_DOC_MAX (16 * 1024 * 1024)
#define FLOW_MAX_CONNECTORS 4096
#define FLOW_MAX_LINKS 8192

/* Parse and validate a flow document (untrusted input: fuzzed). On success
 * out holds the normalized rows (configs as compact JSON); free with
 * store_flow_clear. Validation: known types, each type's check(), unique
 * names of [A-Za-z0-9._-]{1,64}, links between existing connectors to a
 * connector that can deliver, no duplicate links, no cycles. */
int flow_parse(const char *text, size_t len, struct store_flow *out,
               struct error *err);

/* Import time, after flow_parse: read the files f gives (connector
 * secrets and files, sealed; AS2 profile keys, sealed; partner
 * certificates) into f's rows, in the forms of core/flowfile.h (origin:
 * only the CLI may name files; {"sealed": ..} references are looked up in
 * st), and put the stored forms in f's configs. 0 or -1 with err naming
 * the file. */
struct wharf;
int flow_read_files(struct wharf *w, struct store *st, struct store_flow *f,
                    enum flow_origin origin, struct error *err);

/* flow_parse, read and seal the secret files the configs name (vault of
 * w), then replace the stored flow and its secrets in one transaction. A
 * running server picks the new generation up without a restart. */
struct wharf;
int flow_import(struct wharf *w, struct store *st, enum flow_origin origin,
                const char *text,
                size_t len, struct error *err);

/* The stored flow as a pretty JSON document. Caller frees. */
char *flow_export(struct store *st, struct error *err);

/* ---- connector actions (the generic verbs of connector.h) -------------
 * `wharf connector NAME VERB` and /api/v1/connectors/{name}/actions/{verb}
 * go through these two: find (to check the action's permission and
 * method first), then run. */
struct conn_action;
struct conn_action_ctx;

/* The action verb of the stored connector name: *out. CONN_ACT_NOT_FOUND
 * (err: no such connector, or its type has no such verb and which it has)
 * or CONN_ACT_ERROR. */
int flow_action_find(struct store *st, const char *name, const char *verb,
                     const struct conn_action **out, struct error *err);

/* Run action a of the stored connector name with args (an object): x is
 * filled (x->result, x->text, x->audit ...; free with
 * flow_action_clear). Returns an enum conn_act_rc. */
int flow_action_run(struct wharf *w, struct store *st, const char *name,
                    const struct conn_action *a, const json_t *args,
                    struct conn_action_ctx *x, struct error *err);
void flow_action_clear(struct conn_action_ctx *x);

/* GET /oauth/callback: ask every stored connector whose type has
 * oauth_callback whether it started the authorization with this state,
 * and let it finish it with code (NULL: refused). conn (n bytes) gets the
 * connector's name once known. A connector_type's enum conn_oauth_rc:
 * CONN_OAUTH_UNKNOWN (err says so) when none did. */
struct secret;
int flow_oauth_callback(struct wharf *w, struct store *st, const char *state,
                        const struct secret *code, char *conn, size_t n,
                        struct error *err);

/* 1 when a stored connector config sends in the clear ("insecure": true). */
int flow_connector_insecure(const char *config_json);

/* ---- runtime ------------------------------------------------------------- */

/* One generation of the stored flow with its connectors opened: the one
 * live instance of each connector, shared by every engine worker, the
 * poller and the partner listener's routes (core/engine.c hands it out
 * with a reference), closed when the last user lets go. */
struct flow {
    struct connector **conns;
    size_t nconns;
    struct store_flow rows;     /* the links are read from here */
    int64_t generation;
    struct conn_env *env;       /* owned: the connectors' environment */
    atomic_int refs;            /* users; the last flow_free frees */
};

/* Open every connector of the stored flow. A connector that fails to open
 * is left out with an error logged (its hops fail clearly, others run).
 * Caller owns one reference; flow_free. */
struct flow *flow_load(struct wharf *w, struct store *st, struct error *err);
/* Another reference to f (returned). */
struct flow *flow_hold(struct flow *f);
/* Drop a reference; the last one closes the connectors (then their
 * environment) and frees f. NULL is fine. */
void flow_free(struct flow *f);

struct connector *flow_find(const struct flow *f, const char *name);

/* Connectors that follow `from`: *out is malloc'ed (caller frees the array
 * only; the names belong to f). */
size_t flow_next(const struct flow *f, const char *from, const char ***out);

#endif
