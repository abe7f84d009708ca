/*
 * connector.h - the one interface every connector type implements.
 *
 * In the spirit of curl's protocol handlers: a table of function pointers
 * per type (struct connector_type), all listed in connectors/registry.c.
 * The engine knows no connector by name; a connector sees the engine only
 * through this header, struct intake (sources) and struct delivery
 * (destinations).
 *
 * Rules for implementations:
 *   - check() validates a config without side effects; flow import runs it
 *     for every connector before anything is changed.
 *   - A connector never retries on its own: it returns WH_RETRY (transient)
 *     or WH_FAIL (permanent) with a clear error and the engine schedules.
 *   - A source acknowledges (deletes the file, answers 2xx/MDN) only after
 *     intake_commit() returned 0: then the message is durable.
 *   - A destination reports WH_OK only when the far side has the message
 *     durably (fsynced file, MDN, 2xx, SFTP rename).
 */
#ifndef WHARF_CONNECTOR_H
#define WHARF_CONNECTOR_H

#include <jansson.h>
#include <stdint.h>

#include "core/flowfile.h"
#include "core/message.h"
#include "util/error.h"
#include "util/log.h"
#include "util/status.h"

struct intake;
struct net_request;
struct net_server;
struct wharf;

/* One inbound HTTP request handed to a connector's route(): a thin wrapper
 * of net/server.h's request (read it with net_req_* / net_body_*, answer
 * with net_reply_*), plus, for sources, the intake that what it accepts is
 * stored into (commit before answering 2xx). route() always replies and
 * returns WH_OK, or returns another status without replying (then 500). */
struct http_exchange {
    struct net_request *req;
    struct intake *in;          /* to the connector's next hops */
    struct store *st;           /* this request's store connection */
};

/* Retry schedule of one connector, from its config "retry" object. */
struct retry_policy {
    int max_attempts;       /* then the hop is failed; default 10 */
    int64_t initial_ms;     /* first backoff; default 1000 */
    int64_t max_ms;         /* cap; default 600000 */
};

struct connector {
    const struct connector_type *type;
    char *name;                 /* owned */
    json_t *config;             /* owned (a reference) */
    int log_level;              /* -1 = global level */
    int64_t poll_ms;            /* sources: how often poll() runs */
    struct retry_policy retry;
    struct wharf *wharf;        /* not owned: data dir, vault */
    void *state;                /* owned by the type: open() sets, close() frees */
    struct connector_secret_slot *secrets;  /* owned: unsealed, see below */
    size_t nsecrets;
};

/* One message handed to a destination, and what became of it. */
struct delivery {
    const struct message *msg;  /* in */
    /* out: WH_OK, WH_RETRY or WH_FAIL; or WH_AGAIN: nothing failed, the
     * far side has not answered yet (an asynchronous receipt): deliver()
     * runs again at again_at, the attempt is not counted, and receipt
     * (when set) goes into the message's history once, at info. */
    enum wh_status status;
    struct error err;           /* out: why, when not WH_OK */
    char receipt[256];          /* out: what the far side said (optional) */
    int64_t again_at;           /* out, with WH_AGAIN: ms since the epoch */
};

struct connector_type {
    const char *name;
    /* Config keys that give a secret (NULL-terminated, dotted paths into
     * nested objects: "auth.password_file"), in a form of core/flowfile.h,
     * sealed at flow import; NULL when none. open() gets them from
     * connector_secret(). */
    const char *const *secrets;
    /* The same for public files (a CA bundle, a certificate): read at
     * import, kept sealed beside the secrets, handed over the same way. */
    const char *const *files;
    /* Config objects whose credential-named members (connector_credential_
     * name: "Authorization", "X-Api-Key", ...) hold a secret given inline
     * ("headers"): sealed at import as "OBJECT.MEMBER". */
    const char *const *secret_objects;
    /* Whether this config takes messages in (a folder polled, a route):
     * then it needs an outgoing link. NULL: never (or, like as2, it
     * refuses what it cannot route when it arrives). */
    int (*is_source)(const json_t *config);
    /* Config keys that name a local folder (NULL-terminated): they must
     * lie under wharf.conf's allowed_paths (util/confine.h). */
    const char *const *folders;
    /* The config's "partner" must name a partner of the flow document,
     * one connector of the type per partner (AS2 routes by AS2-From). */
    int needs_partner;
    /* What it delivers goes no further (the partner has it): its links
     * carry only what it receives. */
    int ends_path;
    /* Validate a config; no side effects. 0 or -1 with err. */
    int (*check)(const json_t *config, struct error *err);
    /* Parse config, allocate state. */
    enum wh_status (*open)(struct connector *c, struct error *err);
    /* Sources: find new messages and hand them to `in`. NULL if none. */
    enum wh_status (*poll)(struct connector *c, struct intake *in,
                           struct error *err);
    /* Destinations: deliver one message. NULL if not a destination. */
    enum wh_status (*deliver)(struct connector *c, struct delivery *d);
    /* Optional: deliver a batch, sharing syncs; fills every d[i]. */
    void (*deliver_batch)(struct connector *c, struct delivery *d, size_t n);
    /* Inbound HTTP (AS2, webhook); NULL if none. */
    enum wh_status (*route)(struct connector *c, struct http_exchange *x);
    /* Where route() listens on the partner listener (POST PREFIX and
     * below), the body cap there, and which of the type's connectors takes
     * a request (by path or headers; NULL: 404). */
    const char *route_prefix;
    int64_t route_max_body;
    struct connector *(*route_pick)(struct connector *const *conns, size_t n,
                                    struct net_request *req);
    /* "Test connection": what exactly fails. */
    enum wh_status (*test)(struct connector *c, struct error *err);
    void (*close)(struct connector *c);
};

/* The registered type called name, or NULL. */
const struct connector_type *connector_type_find(const char *name);

/* Comma-separated names of every registered type (static string). */
const char *connector_type_names(void);

/* Validate a connector definition: known type, common keys (log_level,
 * poll_ms, retry) well-formed, then the type's own check. */
int connector_check(const char *name, const char *type, const json_t *config,
                    struct error *err);

/* Build and open a connector. Caller owns; free with connector_free. */
struct connector *connector_new(struct wharf *w, const char *name,
                                const char *type, json_t *config,
                                struct error *err);
void connector_free(struct connector *c);

/* Every registered type (static array); returns the count. */
size_t connector_types(const struct connector_type *const **out);

/* `wharf serve`: for every type with route() and route_prefix, route POST
 * PREFIX... on the partner listener to the route() of the connector the
 * type's route_pick() chooses among the stored flow's connectors of that
 * type (connectors/routes.c). Call before net_server_start; free after
 * net_server_free. NULL with err on failure. */
struct partner_routes;
struct partner_routes *partner_routes_register(struct net_server *s,
                                               struct wharf *w,
                                               struct error *err);
void partner_routes_free(struct partner_routes *r);

/* Helper for types' check(): refuse keys of object o not in keys[n]
 * ("WHAT: unknown key ..."). 0 or -1 with err. */
int connector_keys_only(const json_t *o, const char *const *keys, size_t n,
                        const char *what, struct error *err);

/* ---- secrets (connectors/secrets.c) ----------------------------------------
 * Secrets are given as files and stored by the vault: flow import seals
 * each file a type lists in .secrets; connector_new unseals them before
 * open(). Runtime state (OAuth tokens) is sealed into the store by name. */
struct store_flow;
struct secret;
struct connector_secret_slot;

/* Flow import: read and seal every secret and file f's configs give
 * (core/flowfile.h; from the API no file is read), adding the blobs to
 * f->secrets (written by store_flow_put) and putting {"sealed": "CONN:KEY"}
 * in their place in each config (so export names them, and an import of
 * that export keeps them: a reference is looked up in st). 0 or -1 with
 * err naming the connector and key (never the content). */
int connector_secrets_seal(struct wharf *w, struct store *st,
                           struct store_flow *f, enum flow_origin origin,
                           struct error *err);

/* Whether a header (or member) name looks like a credential: it holds
 * auth, token, secret, pass, key, cookie, session, credential or
 * signature (any case). 1 or 0. */
int connector_credential_name(const char *name);

/* Most bytes a secret or a connector file may have. */
#define SECRET_SEAL_MAX (64 * 1024)

/* connector_new: unseal the secrets config names into c; free them. */
int connector_secrets_load(struct connector *c, const json_t *config,
                           struct error *err);
void connector_secrets_free(struct connector *c);

/* The secret the config key `key` named ("auth.password_file"), or NULL
 * when the config names none. Borrowed: lives as long as c. */
const struct secret *connector_secret(const struct connector *c,
                                      const char *key);

/* For check(): a secret (or connector file) key must hold one of the
 * forms of core/flowfile.h (it is read at import, so a file need not
 * exist later). 0 or -1 with err. */
int connector_secret_ok(const char *key, const json_t *v, int required,
                        struct error *err);

/* A file that only lives in memory (memfd) holding s plus a newline, for
 * libraries that insist on a path (libssh2's private key): writes
 * "/proc/self/fd/N" into path and returns the fd (close it when done), or
 * -1 with err. */
int connector_secret_memfile(const struct secret *s, char *path, size_t n,
                             struct error *err);

/* Runtime secrets of connector conn under `name` (e.g. "oauth.refresh"),
 * sealed by the vault. get: 1 and *out (caller frees) when present, 0 when
 * not, -1 on error; expires_at (ms since the epoch, 0 = never) may be
 * NULL. They use the thread's store connection (wharf_store). */
int connector_state_get(struct wharf *w, const char *conn, const char *name,
                        struct secret **out, int64_t *expires_at,
                        struct error *err);
int connector_state_put(struct wharf *w, const char *conn, const char *name,
                        const struct secret *value, int64_t expires_at,
                        struct error *err);
int connector_state_drop(struct wharf *w, const char *conn, const char *name,
                         struct error *err);
/* Names of conn's runtime secrets starting with prefix, oldest first;
 * *names and each name malloc'ed (caller frees). 0 or -1. */
int connector_state_names(struct wharf *w, const char *conn,
                          const char *prefix, char ***names, size_t *n,
                          struct error *err);

/* Log through the connector's own level. */
#define conn_log(c, level, msgid, ...) \
    log_write((level), (c)->log_level, (c)->name, (msgid), __VA_ARGS__)

#endif
