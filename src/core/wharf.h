/*
 * wharf.h - one data directory: its layout, its wharf.conf and its vault.
 *
 *   DIR/            mode 0700
 *     wharf.conf    key = value lines (see conf_keys in wharf.c)
 *     keystore      master keys, mode 0600 (vault.h)
 *     wharf.db      SQLite metadata (store.h)
 *     payloads/     encrypted payload files, one folder per day
 *     logs/         wharf.log and its rotations
 *     state/        what serve writes besides payloads and logs (its
 *                   sandbox allows nothing in DIR itself): health.json,
 *                   the running serve's /healthz state (for status), and
 *                   audit.head (+ .lock), the signed audit head anchor;
 *                   created when missing
 *     wharf.lock    held by serve (and key rotate): "PID VERB"
 *
 * struct wharf is what every subsystem is handed; it owns the vault.
 */
#ifndef WHARF_WHARF_H
#define WHARF_WHARF_H

#include <stddef.h>
#include <stdint.h>

#include "security/security_conf.h"
#include "util/error.h"
#include "util/log.h"

struct vault;

struct wharf_conf {
    enum log_level log_level;
    int workers;                /* delivery threads */
    int large_workers;          /* more threads, only for large messages */
    int64_t large_payload_bytes;    /* "large": this size or more */
    int batch;                  /* hops per lease, files per intake commit */
    int64_t lease_ms;           /* lease length: a dead worker's hops return after it */
    int64_t poll_ms;            /* default poll interval of sources */
    size_t log_max_bytes;
    int log_keep;
    char admin_listen[128];     /* HTTPS listeners: "IPv4:PORT" */
    char partner_listen[128];
    char tls_cert[1024];        /* listener certificate: relative to DIR or absolute */
    char tls_key[1024];
    char admin_client_ca[1024]; /* CA file for mutual TLS; "" = no client certs */
    char partner_client_ca[1024];
    /* R2: the addresses each listener accepts ("" = any; net/allow.h) */
    char admin_allow_from[1024];
    char partner_allow_from[1024];
    int max_header_bytes;       /* request line + headers */
    int64_t max_body_bytes;     /* default body cap of a route */
    int request_timeout_ms;     /* handshake + request head (from accept); body grace */
    int min_body_rate;          /* bytes/s a body or response must average after that */
    int idle_timeout_ms;        /* keep-alive wait; 0 = one request per connection */
    int max_conns_per_address;  /* per listener */
    int max_connections;        /* per listener: open connections */
    int http_threads;           /* per listener: requests served at once */
    int ban_after_failures;     /* defender: failures that ban an address */
    int ban_seconds;            /* first ban; doubles on each repeat, max 1 day */
    int ban_window_seconds;     /* failures are counted within this window */
    /* Logins (R22): Argon2id checks at once, the wait for one, and the
     * per-account throttle (auth.h AUTH_THROTTLE_*; after 0 = off). */
    int login_concurrency;
    int login_wait_ms;
    int login_throttle_after;
    int login_throttle_window_seconds;
    int login_throttle_seconds;
    int metrics_access;         /* WHARF_METRICS_*: who may GET /metrics */
    /* Outbound proxy of every connector without its own "proxy" (R2,
     * net_client_proxy_pick); "" = none. */
    char proxy[512];            /* http://, https://, socks5://, socks5h:// */
    char proxy_credentials_file[1024];  /* absolute; "user:password", 0600,
                                           read when a connector uses it */
    char no_proxy[1024];        /* hosts that go direct, comma-separated */
    /* The folders a flow may name (util/confine.h): comma-separated
     * absolute paths, never inside the data dir; "" = none. */
    char store[1024];           /* "sqlite" (wharf.db here) or a postgresql://
                                   URL shared by a cluster's nodes (R21) */
    char payload_dir[1024];     /* absolute; "" = payloads/ here;
                                   "database": in the PostgreSQL store */
    char allowed_paths[4096];
    int64_t health_failing_ms;  /* a source failing this long: /healthz 503 */
    int64_t log_repeat_ms;      /* summary interval of a repeating warning */
    /* Retention (R9, security/retention.h) and serve's periodic checks
     * (security/upkeep.h). */
    int retention_days;         /* default of connectors; 0 = keep for ever */
    int64_t purge_interval_ms;  /* how often serve purges expired messages */
    int64_t disk_min_free_mb;   /* less free in the data dir: /healthz 503 */
    int64_t health_check_ms;    /* disk, audit chain, certificates, listeners */
    /* Privileges (R22, core/sandbox.h): the account serve started as root
     * runs as ("" = none: refused unless allow_root), its group ("" = the
     * user's own), and the sandbox switch (off only to diagnose). */
    char user[64];
    char group[64];
    int allow_root;             /* 1: started as root without user, stay root */
    int sandbox;                /* 1 (default): no_new_privs, Landlock, seccomp */
    char kms_command[1024];     /* R15: the KMS that seals the keystore
                                   (vault/kms.h); "" = none */
    /* Alerts and notifications (R19): the alert_* and notify_* keys,
     * parsed by security/security_conf.c, all live on SIGHUP. */
    struct security_conf security;
};

/* metrics_access: a bearer token or session with metrics.read (default);
 * loopback clients without credentials (weaker); nobody. */
enum { WHARF_METRICS_TOKEN, WHARF_METRICS_LOOPBACK, WHARF_METRICS_OFF };

struct wharf {
    char dir[4096];
    char db_path[4200], keystore_path[4200], conf_path[4200];
    char payload_dir[4200], log_dir[4200];  /* payload_dir: this node's
                                   payload files, or with payloads_in_db
                                   only its scratch files (DIR/payloads) */
    bool payloads_in_db;        /* payload_dir = database (core/payloads.h) */
    struct wharf_conf conf;
    struct vault *vault;        /* owned */
    struct payload_pool *payload_pool;  /* owned; core/payloads.c */
    int keystore_sealed;        /* at open: 1 sealed by a KMS, 0 text, -1
                                   unknown (read before serve's sandbox
                                   hides the file: the posture report) */
};

struct secret;

struct wharf_init_opts {
    const char *log_level;      /* NULL: info */
    const char *admin_listen;   /* NULL: 127.0.0.1:8443 */
    const char *partner_listen; /* NULL: 127.0.0.1:4080 */
    const char *allowed_paths;  /* NULL: none (flows may name no folder) */
    const char *user;           /* NULL: none; else wharf.conf's user (the
                                   caller chowns: wharf_init_give) */
    const char *store;          /* NULL: sqlite; else a postgresql:// URL
                                   (created there when the database is
                                   empty, joined when it is not) */
    const char *keystore;       /* NULL: a new master key; else the keystore
                                   file of the cluster's first node */
    const char *payload_dir;    /* NULL: DIR/payloads */
    const char *kms_command;    /* NULL: the keystore as text; else the KMS
                                   that seals it (vault/kms.h), written
                                   into wharf.conf */
    const struct secret *store_password;  /* NULL: none (libpq's pgpass);
                                   else the database's, sealed into
                                   DIR/state/store-password (dbpass.h) */
};

/* True when the store is a PostgreSQL database shared with other nodes
 * (wharf.conf store = postgresql://...), false for SQLite's wharf.db. */
bool wharf_store_shared(const struct wharf *w);

/* Point the wharf.conf at conf_path at another store: its store and
 * payload_dir lines are replaced (added when missing) by store (NULL:
 * sqlite) and payload_dir (NULL: "", i.e. DIR/payloads), every other line
 * kept; written atomically, 0600. Both are checked as wharf.conf checks
 * them (a URL with a password is refused) before anything is written.
 * `wharf restore` uses it: the restored node must not point at the source's
 * database or payload folder. 0, or -1 with err. */
int wharf_conf_set_store(const char *conf_path, const char *store,
                         const char *payload_dir, struct error *err);
/* 0 when store (sqlite or a postgresql:// URL) and payload_dir (NULL or
 * absolute) are values wharf.conf takes: a URL that holds a password is
 * refused (err never repeats it). -1 with err otherwise. */
int wharf_conf_store_check(const char *store, const char *payload_dir,
                           struct error *err);

/* Create a new data directory. Refuses an existing DIR. */
int wharf_init(const char *dir, const struct wharf_init_opts *o,
               struct error *err);

/* wharf init --user: give the new data directory and everything in it to
 * user (and the user's group), once init has written all it writes. Only
 * for a directory init just made: never follows a symlink. */
int wharf_init_give(const char *dir, const char *user, struct error *err);

/* Open an existing data directory: read wharf.conf, check permissions,
 * load the keystore. Caller owns; free with wharf_close. */
struct wharf *wharf_open(const char *dir, struct error *err);
void wharf_close(struct wharf *w);

/* Read wharf.conf again (serve does on SIGHUP). Keys that can change at
 * run time (WHARF_CONF_LIVE in wharf.c: log_level, log_max_bytes,
 * log_keep, log_repeat_seconds, health_failing_seconds, ban_*) take their
 * new value in w->conf and are named in out->live; every other key that
 * changed keeps its running value and is named in out->restart. The caller
 * applies the live ones to their subsystems. Only the calling thread may
 * write w->conf: no other thread reads the live keys from it. -1 with err
 * when the file cannot be read or does not parse (nothing changed). */
#define WHARF_CONF_KEYS 48
struct wharf_reload {
    const char *live[WHARF_CONF_KEYS];     /* static key names */
    size_t nlive;
    const char *restart[WHARF_CONF_KEYS];
    size_t nrestart;
};
int wharf_conf_reload(struct wharf *w, struct wharf_reload *out,
                      struct error *err);

/* Parse wharf.conf text into c (defaults first). Exposed for the fuzzer. */
int conf_parse(const char *text, size_t len, struct wharf_conf *c,
               struct error *err);
void conf_defaults(struct wharf_conf *c);

/* This thread's own store connection (opened on first use, closed when
 * the thread ends; never close it). For the listeners' threads and the
 * connectors' occasional writes: opening a connection per request costs
 * more than the request. One process serves one data directory. */
struct store;
struct store *wharf_store(struct wharf *w, struct error *err);

/* Absolute path of a path relative to the data dir. -1 if it won't fit. */
int wharf_path(const struct wharf *w, const char *rel, char *out, size_t n);

/* wharf.conf's global proxy (R2) for what has no proxy setting of its own
 * (notifications, OIDC; connectors go through conn_net_proxy): *px with
 * the URL, no_proxy and, when proxy_credentials_file is set, *auth read
 * from it and checked (the caller frees *auth). px, or NULL: none is set
 * (*auth NULL, no error), or the credentials cannot be read (err). */
struct net_proxy;
const struct net_proxy *wharf_proxy(const struct wharf *w, struct net_proxy *px,
                                    struct secret **auth, struct error *err);

#endif
