/*
 * store.h - the metadata store: messages, hops, events, connectors, links
 * (the flow), settings. The only place in Wharf that speaks SQL.
 *
 * One `struct store` is one database connection and is not thread-safe:
 * each thread opens its own. Batch functions (store_intake, store_hop_lease,
 * store_hop_finish) do their whole batch in one transaction, so a burst of
 * messages shares one commit and one WAL fsync (group commit).
 *
 * Every SQL statement is a constant string with bound parameters.
 * Ownership: every struct filled by a store_ function owns its strings; free
 * them with the matching *_clear / *_free function.
 *
 * Backends: SQLite (sqlite.c: WAL, synchronous=FULL), the default, one
 * node; PostgreSQL (pg.c, libpq), for a cluster of nodes on one database:
 * store_open takes a file path or a postgresql:// URL. Both pass the same
 * conformance tests (tests/unit/test_store.c). Where they differ for a
 * cluster, the function says so (store_leases_release).
 */
#ifndef WHARF_STORE_H
#define WHARF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/id.h"

#define STORE_SCHEMA_VERSION 13

struct store;

/* Open (creating if missing) the database at path and bring its schema up
 * to STORE_SCHEMA_VERSION. Caller owns; close with store_close. */
struct store *store_open(const char *path, struct error *err);
void store_close(struct store *s);

/* The path the store was opened with (borrowed); for PostgreSQL the
 * server and database without user, password or parameters. */
const char *store_path(const struct store *s);
/* True when s was opened from path (a file, or the URL given). */
bool store_opened_from(const struct store *s, const char *path);

/* Whether url may name a PostgreSQL store (the rules of docs/operations.md,
 * "Cluster on PostgreSQL"): no password in it (user:password@ or
 * ?password=: the password goes in pgpass); a database that is not on
 * this machine only over TLS that verifies it (sslmode=verify-full: the
 * server's certificate chains to sslrootcert and names the host), never
 * below TLS 1.2 (ssl_min_protocol_version). A host is on this machine when
 * it is a socket folder, localhost, 127.0.0.0/8 or ::1; libpq's PGHOST and
 * PGSSLMODE count where the URL names none. 0, or -1 with err (which
 * never repeats the URL). */
int store_url_check(const char *url, struct error *err);

/* libpq's version as it says at run time (R10), "MAJOR.MINOR", into
 * buf[0..n). */
void store_pg_lib_version(char *buf, size_t n);

/* The password every PostgreSQL connection this process makes from now on
 * gives the server (the data dir's sealed store password, core/dbpass.h;
 * without one libpq looks in pgpass). Copied and kept until replaced;
 * NULL forgets it. It goes to libpq as its own parameter, never into a
 * URL or a message. Thread-safe. 0, or -1 (out of memory). */
struct secret;
int store_password_set(const struct secret *pw, struct error *err);

/* The files a PostgreSQL store's connections read (sslrootcert, sslcert,
 * sslkey, sslcrl, passfile named in the URL, and $PGPASSFILE), each
 * through fn (which returns non-zero to stop, and that is returned); none
 * for SQLite. serve's sandbox lets its connections read them. */
int store_url_files(const char *url, int (*fn)(const char *path, void *arg),
                    void *arg);

/* Where SQLite writes its temporary files (sorts and statement journals
 * too large for memory) for every connection of this process: dir, instead
 * of /var/tmp or /tmp. serve's sandbox (core/sandbox.h) points it into the
 * data dir, the only place it may write. Call while no other thread uses
 * the store. 0, or -1 with err. */
int store_temp_dir(const char *dir, struct error *err);

/* Schema version recorded in the database (for `wharf doctor`, tests). */
int store_schema_version(struct store *s);

/* ---- settings: small key/value pairs ------------------------------------ */

/* *value is malloc'ed (caller frees) or NULL when the key is unset. */
int store_setting_get(struct store *s, const char *key, char **value,
                      struct error *err);
int store_setting_set(struct store *s, const char *key, const char *value,
                      struct error *err);

/* ---- the flow: connectors and links -------------------------------------- */

struct store_connector { char *name; char *type; char *config; };
struct store_link { char *src; char *dst; };
/* A secret of a connector as the vault sealed it (never plaintext). Names
 * are the config key that named the file ("auth.password_file"), or
 * "state:..." for what a connector obtained itself (OAuth tokens). */
struct store_secret {
    char *connector; char *name;
    unsigned char *blob; size_t len;
    int64_t expires_at;     /* ms since the epoch; 0: does not expire */
};
/* A trading partner (M7): its config is the JSON object as imported. */
struct store_partner { char *name; char *as2_id; char *config; };
/* A certificate of the local profile (owner "") or of a partner, with the
 * profile's private key sealed by the vault (key NULL for partners). */
struct store_cert {
    char id[65];            /* hex SHA-256 of der: the certificate's id */
    char *owner;
    char *subject;          /* one line */
    int64_t not_before, not_after;  /* ms since the epoch */
    int64_t use_from;       /* rollover: send with it from then on; 0: now */
    unsigned char *der; size_t der_len;
    unsigned char *key; size_t key_len;
};
struct store_flow {
    struct store_connector *conns; size_t nconns;
    struct store_link *links; size_t nlinks;
    /* store_flow_put: the sealed secrets of the imported config; they
     * replace every earlier non-"state:" secret, and every secret of a
     * connector that is no longer in the flow goes. Not filled by get. */
    struct store_secret *secrets; size_t nsecrets;
    /* The AS2 profile (JSON text, NULL when none) and partners; filled by
     * get. certs: written by put (replacing all), not filled by get. */
    char *profile;
    struct store_partner *partners; size_t npartners;
    struct store_cert *certs; size_t ncerts;
    int64_t generation;     /* bumped by every store_flow_put */
};

int store_flow_get(struct store *s, struct store_flow *out, struct error *err);
/* Replace every connector and link with f, in one transaction. */
int store_flow_put(struct store *s, const struct store_flow *f,
                   struct error *err);
/* Replace the stored config of connector name by config (compact JSON),
 * if it still is old_config, and bump the flow generation, in one
 * transaction (its sealed secrets and links stay as they are). 0, 1 when
 * there is no such connector or its config changed meanwhile (nothing
 * written), -1 with err. */
int store_connector_config_set(struct store *s, const char *name,
                               const char *old_config, const char *config,
                               struct error *err);
/* Current generation, or -1 on error. Cheap: polled by the engine. */
int64_t store_flow_generation(struct store *s, struct error *err);
void store_flow_clear(struct store_flow *f);

/* ---- messages ------------------------------------------------------------ */

struct store_message {
    char id[ID_LEN + 1];
    int64_t created_at, updated_at;     /* ms since epoch */
    char *source;                       /* connector that received it */
    char *filename;
    int64_t size;
    char *sha256;                       /* hex, of the plaintext */
    char *state;                        /* see store_message_states */
    char *payload_path;                 /* relative to the data dir */
    char *dedup_key;                    /* NULL when not deduplicated */
};
void store_message_clear(struct store_message *m);
void store_messages_free(struct store_message *m, size_t n);

struct store_receipt;
struct store_job_new;

/* A new message for store_intake: the message, the connectors its first
 * hops go to (`next`), and, filled by store_intake, whether it was a
 * duplicate (same source and dedup_key as a stored message; nothing was
 * inserted for it). */
struct store_new {
    const struct store_message *msg;
    const char *const *next;
    size_t nnext;
    int duplicate;
    char existing_id[ID_LEN + 1];       /* the stored one, for duplicates */
    int hold;           /* next hops held until store_message_release */
    /* Kept with a new message in its own commit (not for a duplicate:
     * nothing of it is stored), each may be NULL: a receipt (AS2: the MDN
     * built before the commit and sent after it), a job (an asynchronous
     * MDN owed), and why, an event said once they are in (the hops go on
     * at once: no hold is needed). */
    const struct store_receipt *kept;
    const struct store_job_new *job;
    const char *why;
};

/* next_at of a held hop (year 9999): never due until released. */
#define STORE_HELD_AT 253402300799000LL

/* Release the held hops of a message (why: the event text); kept, when
 * not NULL, is a receipt recorded in the same transaction (AS2: the MDN
 * that just went out: one commit instead of two), and job, when not NULL,
 * a job added in it (job_store.h's store_job_add: an asynchronous MDN
 * owed, queued with the release instead of in a commit of its own). */
struct store_receipt;
struct store_job_new;
int store_message_release(struct store *s, const char *msgid,
                          const char *why, const struct store_receipt *kept,
                          const struct store_job_new *job, struct error *err);
/* Release every held hop (serve start: what a crash left held). On
 * PostgreSQL nothing: the other nodes' holds are theirs; a dead node's
 * go through store_release_stale_holds. */
int store_release_held(struct store *s, struct error *err);

/* Release the held hops whose hold began before `before` (ms since the
 * epoch): the node that held them until its MDN went out died, or lost
 * them. One warning event per message; *released (may be NULL) gets the
 * count of hops. The engine's keeper calls it on every node. */
int store_release_stale_holds(struct store *s, int64_t before,
                              int64_t *released, struct error *err);

/* Record an inbound message that was refused (nothing of it stored: no
 * payload, no hops): state "refused" and one error event with text, so
 * the refusal shows with the other messages. id is filled. */
int store_message_refused(struct store *s, const char *source,
                          const char *text, char id[ID_LEN + 1],
                          struct error *err);

/* In one transaction: for each item insert the message, its source hop
 * (state received), one queued hop per `next`, and events. */
int store_intake(struct store *s, struct store_new *items, size_t n,
                 struct error *err);

/* 0 found, 1 no such message, -1 error. */
int store_message_get(struct store *s, const char *id,
                      struct store_message *out, struct error *err);

/* Every state a message can be in (NULL-terminated): queued processing
 * retrying sent failed received refused erased. */
extern const char *const store_message_states[];
bool store_message_state_known(const char *state);

/* Messages whose id starts with prefix: *count of them and, when exactly
 * one, its id (else ""). 0 or -1. */
int store_message_prefix(struct store *s, const char *prefix,
                         char id[ID_LEN + 1], int64_t *count,
                         struct error *err);

/* Newest first. state may be NULL (all). *out malloc'ed: free with
 * store_messages_free(*out, *n). */
int store_message_list(struct store *s, const char *state, int64_t limit,
                       int64_t offset, struct store_message **out, size_t *n,
                       struct error *err);

/* Every message that has a payload file, oldest first, through cb (stop by
 * returning non-zero, which is returned). */
int store_message_each(struct store *s,
                       int (*cb)(const struct store_message *m, void *arg),
                       void *arg, struct error *err);

/* Re-queue the message's delivery hops (failed ones; if none failed, all of
 * them) with attempts reset; a message that never left its source (it has
 * no other hop) is queued to `next` (the current links of its source). A
 * failed job of the message (job_store.h) is queued again too; then only
 * failed hops go with it. An event names who asked. *requeued gets the
 * count of hops, *jobs (may be NULL) of jobs. 1 when no such message; 2
 * with err when there is nothing to resend (hops still in flight, or no
 * hop and no link); -1 with err on failure. */
int store_message_resend(struct store *s, const char *id, const char *who,
                         const char *const *next, size_t nnext,
                         int *requeued, int *jobs, struct error *err);

/* Mark a message erased (R9): no payload any more, state "erased", its
 * pending hops failed, an event naming who. The caller destroys the payload
 * file first (payload_destroy). 1 when no such message. */
int store_message_erase(struct store *s, const char *id, const char *who,
                        struct error *err);

/* Every setting, by key: *keys and *values malloc'ed arrays of malloc'ed
 * strings; free with store_settings_free. */
int store_settings_list(struct store *s, char ***keys, char ***values,
                        size_t *n, struct error *err);
void store_settings_free(char **keys, char **values, size_t n);

/* ---- hops ---------------------------------------------------------------- */

struct store_hop {
    int64_t id;
    char message_id[ID_LEN + 1];
    char *connector;
    char *state;                /* queued processing sent received failed retrying */
    int attempts;
    int64_t next_at, created_at, updated_at;
    char *last_error;
    char *receipt;
};
void store_hops_free(struct store_hop *h, size_t n);

/* Lease up to max due hops for owner until now + lease_ms: queued or
 * retrying hops with next_at <= now, and processing hops whose lease
 * expired (their worker died). They become `processing`. */
int store_hop_lease(struct store *s, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max, struct store_hop **out,
                    size_t *n, struct error *err);

/* One lane of the engine: only hops whose message has min_size to
 * max_size bytes (large payloads have their own workers). */
struct store_lane {
    int64_t min_size, max_size;
};

/* store_hop_lease restricted to a lane (NULL: every hop). */
int store_hop_lease_lane(struct store *s, const char *owner, int64_t now,
                         int64_t lease_ms, size_t max,
                         const struct store_lane *lane,
                         struct store_hop **out, size_t *n,
                         struct error *err);

/* Keep the leases of owner's hops and jobs being processed until `until`
 * (ms since the epoch): a worker whose batch outlives lease_ms keeps what
 * it is delivering, so no other worker takes it up meanwhile. 0 or -1. */
int store_leases_renew(struct store *s, const char *owner, int64_t until,
                       struct error *err);

/* Forget every lease (single-node SQLite: called when serve starts, since
 * no other process can hold one). On PostgreSQL it gives back nothing:
 * other nodes hold leases there; a dead node's leases expire. */
int store_leases_release(struct store *s, struct error *err);

/* HOP_WAIT: nothing failed, the far side has not answered yet (an
 * asynchronous MDN): the hop stays "retrying" until next_at with its
 * attempts unchanged and no error; receipt (when set: the wait began)
 * becomes an info event, not the hop's receipt; no event for each later
 * look. */
enum hop_result { HOP_SENT, HOP_RETRY, HOP_FAILED, HOP_WAIT };

struct store_outcome {
    int64_t hop_id;
    const char *message_id;
    const char *connector;
    const char *owner;          /* the lease holder: a lost lease is not committed */
    enum hop_result result;
    int attempts;               /* after this attempt */
    int64_t next_at;            /* HOP_RETRY / HOP_WAIT: when to run again */
    const char *error;          /* HOP_RETRY / HOP_FAILED */
    const char *receipt;        /* HOP_SENT: what the far side said;
                                 * HOP_WAIT: what it said so far (for the
                                 * event only); may be NULL */
    const char *const *next;    /* HOP_SENT: connectors to queue next */
    size_t nnext;
    /* a receipt recorded with the outcome, in its transaction, only when
     * the outcome is (AS2: the MDN that came back; the hop it confirms
     * and it, both or neither), or NULL */
    const struct store_receipt *kept;
};

/* Commit outcomes in one transaction: hop rows, events, next hops, and the
 * message state. An outcome whose hop is no longer leased by `owner` is
 * skipped (counted in *skipped when non-NULL). */
int store_hop_finish(struct store *s, const struct store_outcome *o, size_t n,
                     size_t *skipped, struct error *err);

/* Hops of one message, oldest first. */
int store_message_hops(struct store *s, const char *id, struct store_hop **out,
                       size_t *n, struct error *err);

/* ---- events: the per-message history a user reads ------------------------- */

struct store_event {
    int64_t id, at, hop_id;     /* hop_id 0 when not about one hop */
    char *level;                /* info warning error */
    char *text;
};
void store_events_free(struct store_event *e, size_t n);

int store_event_add(struct store *s, const char *msgid, int64_t hop_id,
                    const char *level, const char *text, struct error *err);
int store_message_events(struct store *s, const char *id,
                         struct store_event **out, size_t *n,
                         struct error *err);

/* Counts of hops per state, for status output and tests. */
int store_hop_counts(struct store *s, int64_t *queued, int64_t *processing,
                     int64_t *retrying, int64_t *sent, int64_t *failed,
                     struct error *err);

#endif
