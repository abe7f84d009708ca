/*
 * env.h - what a connector gets from the engine instead of the process:
 * its environment (DESIGN.md, "Next shape: a connector gets an
 * environment, not the process").
 *
 * One struct conn_env per flow generation (and one per CLI or API action
 * that opens a connector), owned by core (core/env.c), shared by every
 * connector of that generation: c->env. A connector reaches the data
 * directory, the vault and the store only through these parts; it never
 * sees struct wharf, a store connection or a master key.
 *
 *   keys      the AS2 profile (private keys as vault handles: they sign
 *             and decrypt through the key process) and the partners with
 *             their certificates, loaded once per generation;
 *   net       the one transport's configuration (net/client.h does the
 *             work): wharf.conf's proxy, resolved by the one proxy rule;
 *   jobs      durable follow-up work of a message the engine runs and
 *             retries (AS2 MDN out, MDN wait), visible in its history:
 *             see "jobs" below;
 *   state     small sealed key-value state per connector (OAuth tokens)
 *             and a claim-once guard (webhook signatures);
 *   history   events and receipts in a message's history, and alerts
 *             (R19: security/alerts.h behind conn_alert);
 *   settings  what a connector may read of wharf.conf.
 *
 * Every function here is thread-safe (workers and listener threads share
 * the environment) and uses the calling thread's store connection.
 * Ownership is said per function; the environment outlives every
 * connector opened with it.
 */
#ifndef WHARF_CONNECTOR_ENV_H
#define WHARF_CONNECTOR_ENV_H

#include <stddef.h>
#include <stdint.h>

#include "net/client.h"
#include "util/error.h"
#include "util/id.h"
#include "util/status.h"

struct secret;
struct profile;
struct partner;
struct conn_keys;
struct conn_transport;
struct conn_jobs;
struct conn_state;
struct conn_history;

/* What a connector may know of wharf.conf (read-only, per generation). */
struct conn_settings {
    int batch;                  /* messages per intake commit */
    int64_t poll_ms;            /* default poll interval of sources */
    char admin_listen[128];     /* "IP:PORT" of the admin listener */
    int partner_client_certs;   /* the partner listener verifies client
                                   certificates (partner_client_ca) */
    char scratch_dir[4200];     /* a folder for unlinked temporary files
                                   (O_TMPFILE) on the data dir's disk */
};

struct conn_env {
    const struct conn_keys *keys;
    const struct conn_transport *net;
    struct conn_jobs *jobs;
    struct conn_state *state;
    struct conn_history *history;
    const struct conn_settings *settings;
};

/* ---- keys -------------------------------------------------------------------
 * Borrowed: they live as long as the environment. The profile's keys are
 * EVP_PKEYs of the vault's provider (a public half and a handle): no
 * private key object exists outside src/vault/. */

/* The local AS2 profile: 1 and *out, 0 when the flow has none, -1 err. */
int conn_keys_profile(const struct conn_keys *k, const struct profile **out,
                      struct error *err);

/* The partner called name: 1 and *out, 0 when there is none, -1 err. */
int conn_keys_partner(const struct conn_keys *k, const char *name,
                      const struct partner **out, struct error *err);

/* ---- the transport ----------------------------------------------------------
 * Outbound connections go through net/client.h only (one TLS policy). The
 * proxy of a connection follows the one rule (net_client_proxy_pick): own
 * is the connector's setting (url "direct" or NULL allowed), the rest is
 * wharf.conf's. *out borrows from own and the transport; when wharf.conf's
 * proxy applies with credentials, *auth gets them (caller frees with
 * secret_free; *out->auth points to it). 0, or -1 with err (never a byte
 * of the credentials). */
int conn_net_proxy(const struct conn_transport *t, const struct net_proxy *own,
                   struct net_proxy *out, enum net_proxy_from *from,
                   struct secret **auth, struct error *err);

/* ---- state ------------------------------------------------------------------
 * Named values of connector conn, sealed by the vault (a key rotation
 * re-seals them), kept across flow imports while the connector exists.
 * get: 1 and *out (caller frees) when present, 0 when not, -1 on error;
 * expires_at (ms since the epoch, 0 = never) may be NULL. */
int conn_state_get(struct conn_state *s, const char *conn, const char *name,
                   struct secret **out, int64_t *expires_at,
                   struct error *err);
int conn_state_put(struct conn_state *s, const char *conn, const char *name,
                   const struct secret *value, int64_t expires_at,
                   struct error *err);
int conn_state_drop(struct conn_state *s, const char *conn, const char *name,
                    struct error *err);
/* Names of conn's values starting with prefix, oldest first; *names and
 * each name malloc'ed (caller frees). 0 or -1. */
int conn_state_names(struct conn_state *s, const char *conn,
                     const char *prefix, char ***names, size_t *n,
                     struct error *err);

/* Claim-once (replay guard): claim key for conn until (ms since the
 * epoch). 0 claimed, 1 already claimed (within its time, or pending in
 * this process), -1 error. settle: done 1 = the claim stays until its
 * time; 0 = released (the request was not stored). Expired claims are
 * pruned. */
int conn_state_claim(struct conn_state *s, const char *conn, const char *key,
                     int64_t until, struct error *err);
int conn_state_settle(struct conn_state *s, const char *conn, const char *key,
                      int done, struct error *err);

/* ---- jobs -------------------------------------------------------------------
 * Follow-up work of a message that outlives a delivery or a request: an
 * AS2 MDN owed to a partner (sent, and retried, after the message was
 * released), an MDN waited for (the hop waits; the job gets the MDN when
 * it arrives, or gives up at its deadline and the message is sent again).
 * A job belongs to a message and (hop_id > 0) one of its hops, at one
 * connector, and has a kind: the connector type's job table
 * (connector.h: struct conn_job_type) names it with its handler and its
 * own retry policy. The engine leases due jobs, runs them through the
 * handler of the connector of the current flow generation, retries them
 * by that policy and records every run's outcome as an event in the
 * message's history; `wharf message resend` queues a failed one again.
 * Data and input are sealed by the vault, unless the kind's type keeps
 * them in the clear (struct conn_job_type.in_clear: values that hold no
 * secret, only what the message's receipts and history keep in the clear
 * anyway; the adder says so with in_clear, and a value in the clear is
 * refused for any other kind). At most one job per message, connector and
 * kind is active (queued, waiting or running). */

struct conn_job_new {
    const char *conn;           /* the connector (its name) */
    const char *kind;           /* one of its type's job kinds */
    const char *message_id;
    int64_t hop_id;             /* 0: the message, not one hop */
    const struct secret *data;  /* what the handler gets (sealed), or NULL */
    int in_clear;               /* 1: data (and input) kept in the clear:
                                   only for a kind whose type says in_clear */
    int waiting;                /* 1: run when input arrives (conn_job_input)
                                   or at give-up, not now */
    int64_t give_up_ms;         /* failed (or, waiting, given up) this long
                                   after it is queued; 0: never */
    const char *note;           /* an info event of the message, or NULL */
};

/* Add job n (replacing an active one of the same message, connector and
 * kind) and, unless it waits, have it run soon. 0 or -1 with err. */
int conn_job_add(struct conn_jobs *j, const struct conn_job_new *n,
                 struct error *err);

/* Job n made ready now (its id given, its data sealed or kept as
 * in_clear says) and added later, in the transaction of another write
 * (intake_release: the asynchronous MDN a message is owed, queued with
 * the release of that message instead of in a commit of its own).
 * conn_job_prepare fills *s (0, or -1 with err and nothing to free); the
 * write that adds it calls conn_job_ready_added once it committed (the
 * workers are woken); conn_job_add_ready adds it alone (when that write
 * failed); conn_job_ready_clear frees it. n's strings must outlive s. */
struct conn_job_ready {
    struct conn_jobs *jobs;
    struct conn_job_new n;
    char id[ID_LEN + 1];
    unsigned char *data;        /* the stored form of the data (owned), or
                                   NULL */
    size_t data_len;
};
int conn_job_prepare(struct conn_jobs *j, const struct conn_job_new *n,
                     struct conn_job_ready *s, struct error *err);
int conn_job_add_ready(const struct conn_job_ready *s, struct error *err);
void conn_job_ready_added(const struct conn_job_ready *s);
void conn_job_ready_clear(struct conn_job_ready *s);

/* Whether conn has an active job of kind for message msgid: 1, 0, -1. */
int conn_job_active(struct conn_jobs *j, const char *conn, const char *msgid,
                    const char *kind, struct error *err);

/* Drop conn's queued or waiting job of kind for msgid (what it stood for
 * did not happen). 1 dropped, 0 none, -1 err. */
int conn_job_cancel(struct conn_jobs *j, const char *conn, const char *msgid,
                    const char *kind, struct error *err);

/* input arrived for conn's queued or waiting job of kind for msgid (it is
 * sealed with the job, or kept in the clear with in_clear as the job's
 * data is; the job runs now). 1 delivered, 0 no such job waits, -1 err. */
int conn_job_input(struct conn_jobs *j, const char *conn, const char *msgid,
                   const char *kind, const struct secret *input, int in_clear,
                   struct error *err);

/* What becomes of a job's hop (its handler says, in struct conn_job). */
enum conn_job_hop {
    CONN_JOB_HOP_NONE = 0,      /* nothing: the hop is not the job's */
    CONN_JOB_HOP_SENT,          /* delivered (receipt) */
    CONN_JOB_HOP_RETRY,         /* a failed attempt of the hop (err): sent
                                   again by the connector's retry policy */
    CONN_JOB_HOP_FAILED,        /* failed for good (err) */
};

/* One run of a job, as its handler gets it. */
struct conn_job {
    const char *id;
    const char *message_id;
    int64_t hop_id;
    const char *kind;
    int attempts;               /* failed runs before this one */
    int waits;                  /* runs that said WH_AGAIN before */
    int64_t created_at, give_up_at;     /* ms since the epoch; 0: never */
    const struct secret *data;  /* as added (NULL: none) */
    const struct secret *input; /* what arrived for it, or NULL */
    /* out */
    struct error err;           /* why, with WH_RETRY / WH_FAIL (and for a
                                   hop that failed or is sent again) */
    char note[600];             /* what happened, for its event: with WH_OK
                                   (default "done"), or with WH_AGAIN (then
                                   an event at note_level; none without) */
    const char *note_level;     /* "info" (NULL) or "warning" */
    int64_t again_at;           /* with WH_AGAIN: run again then */
    enum conn_job_hop hop;      /* what becomes of its hop */
    char receipt[256];          /* with CONN_JOB_HOP_SENT */
    struct conn_held *held;     /* a receipt kept with its hop's outcome
                                   (conn_receipt_hold), or NULL */
};

/* ---- history ------------------------------------------------------------------ */

/* An event (level "info", "warning", "error") in message msgid's history,
 * about hop hop_id (0: the message). */
int conn_event(struct conn_history *h, const char *msgid, int64_t hop_id,
               const char *level, const char *text, struct error *err);

/* Keep a receipt (an AS2 MDN: the non-repudiation record) with message
 * msgid: direction "sent" or "received", headers as "Name: value\r\n"
 * lines, the body as it went over the wire. */
struct conn_receipt {
    const char *msgid;
    const char *direction;
    const char *headers;
    const void *body;
    size_t len;
    const char *mdn_id;         /* its own Message-ID, or NULL */
    const char *original_id;    /* what it answers, or NULL */
};
int conn_receipt_keep(struct conn_history *h, const struct conn_receipt *r,
                      struct error *err);

/* A receipt held for the outcome it belongs to (struct delivery.held,
 * struct conn_job.held: AS2's MDN that came back), kept in the
 * transaction that records that outcome: the hop it confirms and it are
 * recorded both or neither. conn_receipt_hold copies r: NULL when out of
 * memory (then keep it at once with conn_receipt_keep). The engine frees
 * it (conn_held_free) after the commit. */
struct conn_held;
struct conn_held *conn_receipt_hold(const struct conn_receipt *r);
void conn_held_free(struct conn_held *h);

/* An alert (R19, docs/operations.md "Alert rules") of kind about key
 * (the connector's name, or "NAME ADDRESS REASON"): raised, or folded
 * into the open one; summary and details one line each, names and ids
 * only (never a secret or a payload byte). conn_alert_clear: the
 * condition ended. Never fail their caller; no transaction may be open on
 * the calling thread. */
enum conn_alert_level {
    CONN_ALERT_INFO, CONN_ALERT_WARNING, CONN_ALERT_CRITICAL
};
void conn_alert(struct conn_history *h, const char *kind, const char *key,
                enum conn_alert_level level, const char *summary,
                const char *details);
void conn_alert_clear(struct conn_history *h, const char *kind,
                      const char *key);

#endif
