/*
 * connector.h - the one interface every connector type implements.
 *
 * In the spirit of curl's protocol handlers: a table of function pointers
 * per type (struct connector_type), all listed in connectors/registry.c.
 * The engine knows no connector by name; a connector sees the engine only
 * through this header, its environment (connectors/env.h: c->env), struct
 * intake (sources) and struct delivery (destinations). It never sees
 * struct wharf, the vault or the store.
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
#include <openssl/types.h>
#include <stdint.h>

#include "connectors/env.h"
#include "core/flowfile.h"
#include "core/message.h"
#include "util/error.h"
#include "util/log.h"
#include "util/status.h"

struct intake;
struct net_request;
struct secret;

/* One inbound HTTP request handed to a connector's route(): a thin wrapper
 * of net/server.h's request (read it with net_req_* / net_body_*, answer
 * with net_reply_*), plus, for sources, the intake that what it accepts is
 * stored into (commit before answering 2xx). route() always replies and
 * returns WH_OK, or returns another status without replying (then 500). */
struct http_exchange {
    struct net_request *req;
    struct intake *in;          /* to the connector's next hops */
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
    int concurrency;            /* deliveries of a batch at once (>= 1) */
    int64_t poll_ms;            /* sources: how often poll() runs */
    struct retry_policy retry;
    struct conn_env *env;       /* not owned: keys, transport, jobs, state,
                                   history (connectors/env.h) */
    void *state;                /* owned by the type: open() sets, close() frees */
    struct connector_secret_slot *secrets;  /* owned: unsealed, see below */
    size_t nsecrets;
};

/* One message handed to a destination, and what became of it. */
struct delivery {
    const struct message *msg;  /* in */
    int64_t hop_id;             /* in: the hop this delivery is (for jobs) */
    /* out: WH_OK, WH_RETRY or WH_FAIL; or WH_AGAIN: nothing failed, the
     * far side has not answered yet (an asynchronous receipt): deliver()
     * runs again at again_at unless a job of the hop (connectors/env.h)
     * settles it first, the attempt is not counted, and receipt (when
     * set) goes into the message's history once, at info. */
    enum wh_status status;
    struct error err;           /* out: why, when not WH_OK */
    char receipt[256];          /* out: what the far side said (optional) */
    int64_t again_at;           /* out, with WH_AGAIN: ms since the epoch */
    struct conn_held *held;     /* out, optional: a receipt kept with the
                                   outcome (connectors/env.h:
                                   conn_receipt_hold); the engine frees it */
};

/* ---- the config map of a type (connectors/options.c) ------------------------
 * Every key a type's config takes is declared once, in a table of struct
 * conn_option: the one generic validator (connector_check) walks it for
 * unknown keys, types, required keys, enums, ranges and conditions; open()
 * reads settings through the typed getters (conn_str, conn_int, ...) that
 * apply the declared default; `wharf connector help`, GET /api/v1/
 * connector-types and the OpenAPI config schemas are printed from it. */
enum conn_opt_type {
    CONN_STRING,    /* a string (max: longest length, 0 = any) */
    CONN_INT,       /* an integer in min..max */
    CONN_BOOL,      /* true or false */
    CONN_ENUM,      /* a string among values ("delete|archive") */
    CONN_URL,       /* a URL string (its scheme rules: the type's check) */
    CONN_OBJECT,    /* an object: its members are declared as "KEY.member" */
    CONN_MAP,       /* an object of free names to one-line strings */
    CONN_LIST,      /* a list of min..max items of type values ("int" or
                       "string") */
    CONN_SECRET,    /* a secret in a form of core/flowfile.h, sealed at
                       import; open() gets it from connector_secret() */
    CONN_FILE,      /* a public file (CA bundle, certificate): same forms,
                       read at import, kept beside the secrets */
    CONN_FOLDER,    /* a local folder under wharf.conf's allowed_paths
                       (util/confine.h) */
    CONN_PROXY,     /* a proxy URL, "direct", or an object {"url",
                       "credentials_file", "no_proxy"} (connectors/proxy.h) */
};

#define CONN_REQUIRED 0x01          /* must be given (when `when` holds) */
#define CONN_ADVANCED 0x02          /* rarely changed: forms fold it away */
#define CONN_SECRET_MEMBERS 0x04    /* CONN_MAP: credential-named members
                                       (connector_credential_name) hold a
                                       secret, sealed as "KEY.MEMBER" */
#define CONN_PRIVATE_KEY 0x08       /* CONN_SECRET: a private key that opens
                                       only inside the vault (R15): open()
                                       gets a handle from connector_key() */

struct conn_option {
    const char *key;        /* "port"; dotted in an object: "auth.user" */
    enum conn_opt_type type;
    unsigned flags;
    const char *def;        /* the default as text ("22", "*", "true"), or
                               NULL: none (help says what absence means) */
    long long min, max;     /* CONN_INT: range; CONN_LIST: item count;
                               CONN_STRING: max length (0 = any) */
    const char *values;     /* CONN_ENUM: "a|b|c"; CONN_LIST: item type */
    const char *when;       /* applies only when "KEY=v1|v2" holds (KEY is
                               another option, compared as a string), or
                               NULL: always */
    const char *help;
    /* Optional rule for the value's form (a host name, a fingerprint):
     * 0, or -1 with err naming key. Cross-key rules go in check(). */
    int (*valid)(const char *key, const json_t *v, struct error *err);
};

/* ---- generic actions (`wharf connector NAME VERB`, POST /api/v1/connectors/
 * {name}/actions/{verb}) -------------------------------------------------- */
enum conn_act_rc {
    CONN_ACT_OK = 0,
    CONN_ACT_INVALID = 1,       /* the arguments are wrong (400) */
    CONN_ACT_REFUSED = 2,       /* the state does not allow it (409, code) */
    CONN_ACT_UNREACHABLE = 3,   /* the partner's side failed (502) */
    CONN_ACT_NOT_FOUND = 4,     /* no such connector or verb (404) */
    CONN_ACT_ERROR = -1,        /* store, memory ... (500) */
};

/* What an action gets from its caller (core/flow.c's dispatcher: the
 * stored connector, opened on demand) and fills in. */
struct conn_action_ctx {
    const char *name;           /* the connector */
    const char *type;
    const json_t *config;       /* its stored config (borrowed) */
    const json_t *args;         /* the caller's arguments (an object) */
    /* Open the stored connector (caller frees with connector_free). */
    struct connector *(*open)(struct conn_action_ctx *x, struct error *err);
    struct conn_env *cenv;      /* the environment it is opened with */
    /* Store config key = value (stolen) in the connector's stored config
     * if it did not change meanwhile, after connector_check: 0, 1 when it
     * changed meanwhile, -1 with err. The flow generation moves. */
    int (*config_set)(struct conn_action_ctx *x, const char *key,
                      json_t *value, struct error *err);
    void *env;                  /* the dispatcher's */
    /* out */
    json_t *result;             /* an object: the API's answer, `--json` */
    char text[1024];            /* what the CLI prints (also on failure) */
    char note[256];             /* advice the CLI prints on stderr */
    char audit[512];            /* audit detail; "" = nothing to audit */
    char code[32];              /* on CONN_ACT_REFUSED: the error code */
};

struct conn_action {
    const char *verb;           /* "hostkey.capture" */
    const char *permission;     /* auth.h's name: "connector.test" */
    int read_only;              /* changes nothing: GET may call it */
    const char *audit;          /* audit action ("connector.test"), or NULL */
    const char *const *params;  /* argument names, NULL-terminated (the
                                   CLI's positional ARGS in order), or NULL */
    const char *summary;
    enum conn_act_rc (*fn)(struct conn_action_ctx *x, struct error *err);
};

/* ---- jobs (connectors/env.h: durable follow-up work the engine runs) ---- */
struct conn_job;

struct conn_job_type {
    const char *kind;           /* "as2.mdn-out": unique among all types */
    const char *summary;        /* what it does, for help and history:
                                   "send the asynchronous MDN we owe" */
    /* Its own retry policy: a WH_RETRY run is tried again after the
     * backoff; max_attempts 0: until give-up (struct conn_job_new). */
    struct retry_policy retry;
    /* Run job j of connector c (of the current flow generation): WH_OK
     * done; WH_RETRY a failed attempt (j->err); WH_FAIL failed for good;
     * WH_AGAIN not yet, no attempt counted (j->again_at). j->hop says
     * what becomes of the job's hop. */
    enum wh_status (*run)(struct connector *c, struct conn_job *j);
    /* The alert kind (security/alerts.h, docs/operations.md) the engine
     * raises, keyed by the connector's name, when a job of this kind is
     * given up; NULL: none. */
    const char *alert_given_up;
    /* 1: its data and input are kept in the clear (connectors/env.h,
     * "jobs"), because they hold nothing the message's receipts and
     * history do not keep in the clear (AS2: message ids, a MIC, an MDN
     * and where it goes), and sealing them cost a key-process round trip
     * each (docs/decisions/). 0: sealed by the vault. */
    int in_clear;
};

/* The "test" action every type with test() lists: opens the connector and
 * runs its test(); result {"connector", "ok", "detail"}. */
enum conn_act_rc connector_action_test(struct conn_action_ctx *x,
                                       struct error *err);
#define CONN_ACTION_TEST { "test", "connector.test", 1, "connector.test", \
    NULL, "test connection: says precisely what fails", \
    connector_action_test }

/* What an OAuth redirect brings back (core/flow.c's flow_oauth_callback
 * asks each stored connector whose type has oauth_callback). */
enum conn_oauth_rc {
    CONN_OAUTH_OK = 0,
    CONN_OAUTH_UNKNOWN = 1,     /* no pending authorization with that state */
    CONN_OAUTH_FAILED = -1,     /* err says why */
};

/* One stored connector as an OAuth redirect sees it. */
struct conn_oauth_ctx {
    const char *name;           /* the connector */
    const json_t *config;       /* its stored config (borrowed) */
    struct conn_env *env;       /* its environment (state: the pending
                                   authorization) */
    /* Open it (caller frees with connector_free). */
    struct connector *(*open)(struct conn_oauth_ctx *x, struct error *err);
    void *priv;                 /* the dispatcher's */
};

struct connector_type {
    const char *name;
    const char *summary;        /* one line for `wharf connector help` */
    /* The config map (terminated by an entry with key NULL). */
    const struct conn_option *options;
    /* The generic verbs (terminated by verb NULL), or NULL. */
    const struct conn_action *actions;
    /* The kinds of durable jobs its connectors add (terminated by kind
     * NULL), or NULL. */
    const struct conn_job_type *jobs;
    /* Optional: finish an authorization whose state is `state` with
     * `code` (NULL: refused) if the stored connector x started it:
     * CONN_OAUTH_UNKNOWN when it did not. */
    enum conn_oauth_rc (*oauth_callback)(struct conn_oauth_ctx *x,
                                         const char *state,
                                         const struct secret *code,
                                         struct error *err);
    /* Whether this config takes messages in (a folder polled, a route):
     * then it needs an outgoing link. NULL: never (or, like as2, it
     * refuses what it cannot route when it arrives). */
    int (*is_source)(const json_t *config);
    /* The config's "partner" must name a partner of the flow document,
     * one connector of the type per partner (AS2 routes by AS2-From). */
    int needs_partner;
    /* What it delivers goes no further (the partner has it): its links
     * carry only what it receives. */
    int ends_path;
    /* The default of the common key "concurrency": how many deliveries of
     * one leased batch run at once (0: 1). A type whose deliver() waits on
     * a partner (a POST and its receipt) gains from more than one; its
     * deliver() must then be safe to run in several threads at once on the
     * same connector (it already is across workers). */
    int concurrency;
    /* Cross-key rules the option table cannot say, after it was checked
     * (NULL: none); no side effects. 0 or -1 with err. */
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

/* Validate a connector definition: known type, the common keys
 * (log_level, poll_ms, retry, retention_days, concurrency) and the type's options
 * (connector_options_check), then the type's own check. 0 or -1 with err naming the key. */
int connector_check(const char *name, const char *type, const json_t *config,
                    struct error *err);

/* ---- options (connectors/options.c) ---------------------------------------- */

/* Keys every connector takes (log_level, poll_ms, retry,
 * retention_days, concurrency): a static table. */
const struct conn_option *connector_common_options(void);

/* Walk table over config: unknown keys, types, required keys, enum values,
 * ranges, conditions, then each option's valid(). 0 or -1 with err. */
int connector_options_check(const struct conn_option *table,
                            const json_t *config, struct error *err);

/* The common keys of a whole config (the type's keys are ignored). */
int connector_common_check(const json_t *config, struct error *err);

/* The option called key in table, or NULL. */
const struct conn_option *connector_option_find(const struct conn_option *t,
                                                const char *key);

/* The value at dotted key in config ("auth.user"), or NULL (borrowed). */
const json_t *connector_config_get(const json_t *config, const char *key);

/* Typed getters for open(): the value of key in c's config or else its
 * declared default (key must be declared: a missing declaration is a bug,
 * logged, and reads as absent). conn_str: NULL when neither is there. */
const char *conn_str(const struct connector *c, const char *key);
long long conn_int(const struct connector *c, const char *key);
int conn_bool(const struct connector *c, const char *key);
/* The raw value (objects, lists), NULL when absent (no default). */
const json_t *conn_get(const struct connector *c, const char *key);

/* Whether dotted key is of a type sealed at import (CONN_SECRET, CONN_FILE)
 * in t's table: 1 secret, 2 public file, 0 neither. */
int connector_option_sealed(const struct connector_type *t, const char *key);

/* Every type as JSON (static data only: no secret exists in a table):
 * {"types": [{"name", "summary", "options": [...], "actions": [...]}],
 * "common": [...]}. Caller decrefs. */
json_t *connector_types_json(void);

/* The JSON Schema (2020-12, as OpenAPI 3.1 takes it) of type t's config,
 * common keys included. Caller decrefs. */
json_t *connector_config_schema(const struct connector_type *t);

/* The action verb of type t, or NULL. */
const struct conn_action *connector_action_find(const struct connector_type *t,
                                                const char *verb);

/* The job kind of type t, or NULL. */
const struct conn_job_type *connector_job_type(const struct connector_type *t,
                                               const char *kind);

/* The action verb of any type (the first that has it), or NULL: what an
 * attempt on a connector that turned out not to have it is audited as. */
const struct conn_action *connector_action_any(const char *verb);

/* Build and open a connector with environment env (borrowed: it must
 * outlive the connector; NULL: no data dir, for checks and tests). Caller
 * owns; free with connector_free. */
struct connector *connector_new(struct conn_env *env, const char *name,
                                const char *type, json_t *config,
                                struct error *err);
void connector_free(struct connector *c);

/* Every registered type (static array); returns the count. */
size_t connector_types(const struct connector_type *const **out);

/* ---- secrets (connectors/secrets.c; sealing and unsealing: core) -----------
 * Secrets are given as files and stored by the vault: flow import seals
 * each CONN_SECRET and CONN_FILE option (and the credential members of a
 * CONN_SECRET_MEMBERS map); connector_new unseals them before open()
 * (core/conn_secrets.c). What a connector obtains itself (OAuth tokens) is
 * its state (connectors/env.h). */
struct connector_secret_slot;

/* Whether a header (or member) name looks like a credential: it holds
 * auth, token, secret, pass, key, cookie, session, credential or
 * signature (any case). 1 or 0. */
int connector_credential_name(const char *name);

/* Most bytes a secret or a connector file may have. */
#define SECRET_SEAL_MAX (64 * 1024)

/* Every key of config that holds a sealed value or a file to seal: the
 * type's CONN_SECRET and CONN_FILE options, and the credential-named
 * members of its CONN_SECRET_MEMBERS maps ("headers.X-Api-Key"). Calls
 * fn(key, secret, ud) for each present one, secret being 0 for a file,
 * CONN_KEY_SECRET or CONN_KEY_PRIVATE (a CONN_PRIVATE_KEY option); stops
 * at (and returns) the first non-zero return. */
#define CONN_KEY_SECRET 1
#define CONN_KEY_PRIVATE 2
typedef int (*connector_secret_key_fn)(const char *key, int secret, void *ud);
int connector_secret_keys(const struct connector_type *t, const json_t *config,
                          connector_secret_key_fn fn, void *ud);

/* The value at dotted key in config, where a member named like the whole
 * rest wins over a split at a dot ("headers.X-Api.Key" finds the header
 * "X-Api.Key"): the value (borrowed) with the object holding it (*parent)
 * and its member name there (*leaf, a suffix of key), or NULL. */
json_t *connector_config_member(const json_t *config, const char *key,
                                json_t **parent, const char **leaf);

/* connector_new: unseal the secrets config names into c (core; through
 * c->env's data dir, none without an environment). 0 or -1 with err. */
int connector_secrets_load(struct connector *c, const json_t *config,
                           struct error *err);
/* Add the unsealed value of key to c (value taken, also on failure). */
int connector_secret_add(struct connector *c, const char *key,
                         struct secret *value, struct error *err);
/* Add the handle key (vault/keyop.h) of a CONN_PRIVATE_KEY key to c (key
 * taken, also on failure). */
int connector_key_add(struct connector *c, const char *key, EVP_PKEY *pkey,
                      struct error *err);
/* Add the SSH user key (net/ssh_agent.h: a signer of the vault) of a
 * CONN_PRIVATE_KEY key to c (taken, also on failure). */
struct net_ssh_signer;
int connector_ssh_key_add(struct connector *c, const char *key,
                          struct net_ssh_signer *s, struct error *err);
void connector_secrets_free(struct connector *c);

/* The secret the config key `key` named ("auth.password_file"), or NULL
 * when the config names none. Borrowed: lives as long as c. */
const struct secret *connector_secret(const struct connector *c,
                                      const char *key);

/* The handle key of the CONN_PRIVATE_KEY option `key` ("auth.key"): an
 * EVP_PKEY of the vault's provider that signs through the process holding
 * the key, or NULL when the config names none. Borrowed: lives as long as
 * c. */
EVP_PKEY *connector_key(const struct connector *c, const char *key);

/* The SSH user key of the CONN_PRIVATE_KEY option `key` ("key_file"),
 * which signs through the process holding it, or NULL when the config
 * names none. Borrowed: lives as long as c. */
const struct net_ssh_signer *connector_ssh_key(const struct connector *c,
                                               const char *key);

/* For check(): a secret (or connector file) key must hold one of the
 * forms of core/flowfile.h (it is read at import, so a file need not
 * exist later). 0 or -1 with err. */
int connector_secret_ok(const char *key, const json_t *v, int required,
                        struct error *err);

/* Log through the connector's own level. */
#define conn_log(c, level, msgid, ...) \
    log_write((level), (c)->log_level, (c)->name, (msgid), __VA_ARGS__)

#endif
