/*
 * serve.c - `wharf init` and `wharf serve`.
 *
 * serve turns core dumps off first (a core would hold the master key and
 * the secrets in memory), holds DIR/wharf.lock for its lifetime (one
 * server per data dir; the file names its pid), logs to DIR/logs/wharf.log
 * and to stderr, releases the leases a killed predecessor left (SQLite is
 * single-node), starts the engine and waits for signals: SIGTERM or SIGINT
 * finish the current batches and exit 0; SIGHUP reopens the log file and
 * reloads wharf.conf (the keys that can change at run time apply, the
 * others are logged as needing a restart; a file that does not parse is
 * refused and the running configuration stays), audited as conf.reload.
 * The HTTPS listeners (net/server.h) start after the engine and stop before
 * it; a listener that cannot start (address in use, bad certificate) makes
 * serve exit 1 with one line saying which and why. /healthz answers from
 * core/health.h, which serve mirrors to DIR/state/health.json for `wharf
 * status` (in state/, created if missing: the sandbox lets serve write
 * nowhere in DIR itself); security/upkeep.h runs the periodic health
 * checks and retention purges.
 *
 * Privileges (R22, core/sandbox.h): right after opening the data dir a
 * serve started as root becomes wharf.conf's user (or refuses to stay
 * root without allow_root); the listeners are bound before any thread
 * starts, and the SFTP connectors' ssh-agent socket made in DIR/state
 * (net/ssh_agent.h: no listening socket can be made inside the sandbox),
 * then serve enters its sandbox (no capabilities, no_new_privs, Landlock,
 * seccomp), then the engine and the listeners start.
 *
 * On a PostgreSQL store it refuses a keystore whose active master key is
 * not the one the cluster moved to at its last `wharf key rotate`
 * (ROTATE_CLUSTER_KEY of core/rotate.h): an old copy of the keystore,
 * not replaced after a rotation on another node, could not open what the
 * rotation re-wrapped.
 *
 * Must never: run with core dumps possible; exit on SIGHUP.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "audit/audit.h"
#include "cli/cli.h"
#include "connectors/connector.h"
#include "core/dbpass.h"
#include "core/engine.h"
#include "core/health.h"
#include "core/rotate.h"
#include "core/sandbox.h"
#include "core/wharf.h"
#include "net/server.h"
#include "net/ssh_agent.h"
#include "security/alerts.h"
#include "security/security.h"
#include "security/upkeep.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"
#include "util/secret.h"
#include "vault/keyproc.h"
#include "vault/vault.h"
#include "web/console.h"

/* Record the new data dir as the first audit entry. */
static int init_audit(const char *data)
{
    struct wharf *w;
    struct store *st;
    if (cli_open(data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = cli_audit(w, st, "wharf.init", data, NULL);
    cli_close(w, st);
    return rc;
}

static int init_run(int argc, char **argv)
{
    static const char *const opts[] = { "--log-level=", "--admin-listen=",
                                        "--partner-listen=",
                                        "--allowed-paths=", "--user=",
                                        "--store=", "--keystore=",
                                        "--payload-dir=",
                                        "--store-password-file=",
                                        "--kms-command=", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_init, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos > 0)
        return cli_usage(&cmd_init, "unexpected argument %s", a.pos[0]);
    struct wharf_init_opts o = { .log_level = a.values[0],
                                 .admin_listen = a.values[1],
                                 .partner_listen = a.values[2],
                                 .allowed_paths = a.values[3],
                                 .user = a.values[4],
                                 .store = a.values[5],
                                 .keystore = a.values[6],
                                 .payload_dir = a.values[7],
                                 .kms_command = a.values[9] };
    struct error err = {0};
    struct secret *pw = NULL;
    if (a.values[8] != NULL &&
        (pw = dbpass_read_file(a.values[8], &err)) == NULL)
        return cli_fail("--store-password-file: %s", err.msg);
    o.store_password = pw;
    int made = wharf_init(a.data, &o, &err);
    secret_free(pw);
    if (made < 0)
        return cli_fail("%s", err.msg);
    if (init_audit(a.data) != EXIT_OK)
        return EXIT_FAIL;
    printf("initialized %s\n", a.data);
    /* a node joining a cluster (--keystore): its administrators are the
     * cluster's, already in the shared database */
    int rc = o.keystore ? EXIT_OK : cli_user_bootstrap(a.data);
    if (o.keystore)
        printf("joined the cluster on %s\n", o.store ? o.store : "sqlite");
    if (rc == EXIT_OK && o.user && wharf_init_give(a.data, o.user, &err) < 0)
        return cli_fail("%s", err.msg);
    return rc;
}

const struct cli_cmd cmd_init = {
    "init", "create a data directory (keystore, database, folders)",
    "wharf init [--data DIR] [--log-level LEVEL] [--admin-listen IP:PORT]\n"
    "           [--partner-listen IP:PORT] [--allowed-paths DIR[,DIR...]]\n"
    "           [--user NAME] [--store URL [--keystore FILE]]\n"
    "           [--payload-dir DIR|database] [--store-password-file F]\n"
    "           [--kms-command PATH]\n"
    "  Creates DIR (default ./wharf-data) with wharf.conf, a new master key\n"
    "  (keystore, mode 0600), wharf.db, payloads/, logs/, state/ and a\n"
    "  self-signed TLS certificate for the listeners (tls/cert.pem,\n"
    "  tls/key.pem).\n"
    "  Never overwrites.\n"
    "  LEVEL: error, warning, info (default), debug, trace.\n"
    "  --admin-listen    admin HTTPS listener (default 127.0.0.1:8443)\n"
    "  --partner-listen  partner HTTPS listener (default 127.0.0.1:4080)\n"
    "  --allowed-paths   the folders flows may name (file connectors, secret\n"
    "                    files); none by default (wharf.conf allowed_paths)\n"
    "  --user            the account serve runs as when started as root\n"
    "                    (wharf.conf user); DIR and all in it are given to\n"
    "                    it (needs root)\n"
    "  --store           postgresql://USER@HOST:PORT/DB: a node of a cluster\n"
    "                    on that database (its schema is made when it is\n"
    "                    empty); default sqlite (wharf.db in DIR)\n"
    "  --keystore        the first node's keystore: every node of a cluster\n"
    "                    shares its master key (sealed by a KMS: give\n"
    "                    --kms-command too)\n"
    "  --kms-command     the KMS that seals the keystore (wharf.conf's\n"
    "                    kms_command; docs/operations.md)\n"
    "  --payload-dir     where payloads are kept (default DIR/payloads); a\n"
    "                    cluster's nodes name one shared folder, or\n"
    "                    database (with --store): in the database, so the\n"
    "                    nodes share nothing else\n"
    "  --store-password-file  the database's password (first line of F,\n"
    "                    mode 0600): sealed by the master key into\n"
    "                    DIR/state/store-password, never kept in plaintext\n"
    "                    (without it libpq reads DIR/pgpass)\n",
    init_run,
};

/* Sign the audit trail's head (at start and on a clean stop, so a later
 * truncation is detectable); a failure is logged, not fatal. */
static void serve_checkpoint(struct wharf *w)
{
    struct error err = {0};
    struct store *st = store_open(w->db_path, &err);
    if (st == NULL || audit_checkpoint(st, w->vault, &err) < 0)
        log_warn("audit checkpoint failed: %s", err.msg);
    store_close(st);
}

/* No core file, ever: RLIMIT_CORE 0 (soft and hard) and not dumpable
 * (which also keeps the kernel from piping a core to a handler, and other
 * processes of the same user from reading this one's memory). Before the
 * keystore is read. */
static int serve_no_core(struct error *err)
{
    struct rlimit none = { 0, 0 };
    if (setrlimit(RLIMIT_CORE, &none) != 0)
        return error_errno(err, errno, "cannot turn core dumps off "
                           "(setrlimit RLIMIT_CORE)");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return error_errno(err, errno, "cannot turn core dumps off "
                           "(prctl PR_SET_DUMPABLE)");
    return 0;
}

/* ---- health ------------------------------------------------------------------- */

static json_t *serve_health(void *arg, int *healthy)
{
    (void)arg;
    json_t *state = health_state();
    json_t *report = health_report(state, time_now_ms(), healthy);
    json_decref(state);
    return report;
}

static void serve_health_start(struct wharf *w)
{
    char path[4200];
    if (wharf_path(w, "state", path, sizeof(path)) < 0 ||
        (mkdir(path, 0700) < 0 && errno != EEXIST) ||
        wharf_path(w, "state/health.json", path, sizeof(path)) < 0) {
        log_warn("cannot create %s/state: `wharf status` will not see this "
                 "server's health", w->dir);
        health_start(NULL, w->conf.health_failing_ms);
        return;
    }
    health_start(path, w->conf.health_failing_ms);
}

/* ---- SIGHUP ------------------------------------------------------------------- */

/* conf.reload in the audit trail (actor "system": a signal names no one). */
static void serve_audit_reload(struct wharf *w, const char *detail)
{
    struct error err = {0};
    struct audit_event e = { .actor = "system", .action = "conf.reload",
                             .target = w->conf_path, .detail = detail };
    struct store *st = store_open(w->db_path, &err);
    if (st == NULL || audit_append(st, w->vault, &e, &err) < 0)
        log_error("reload: audit entry not written: %s", err.msg);
    store_close(st);
}

/* Publish the running configuration to the other threads that read live
 * keys (security/upkeep.h). */
static void serve_upkeep_conf(const struct wharf *w)
{
    upkeep_set_conf(&w->conf);
}

/* Hand the live keys (as w->conf holds them now) to their subsystems. */
static void serve_apply_live(struct wharf *w, struct net_server *net)
{
    struct error err = {0};
    serve_upkeep_conf(w);
    log_set_level(w->conf.log_level);
    log_set_rotation(w->conf.log_max_bytes, w->conf.log_keep);
    log_set_repeat_interval(w->conf.log_repeat_ms);
    health_set_failing_ms(w->conf.health_failing_ms);
    if (net_server_reload_defender(net, &err) < 0)
        log_error("reload: ban settings not applied: %s", err.msg);
    security_set_conf(&w->conf.security);
}

/* "KEY KEY ..." of n names into out. */
static void serve_join(const char *const *keys, size_t n, char *out,
                       size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++) {
        int k = snprintf(out + len, size - len, "%s%s", i ? " " : "",
                         keys[i]);
        len += k > 0 ? (size_t)k : 0;
    }
}

static void serve_reload(struct wharf *w, struct net_server *net)
{
    struct error err = {0};
    if (log_reopen(&err) < 0)
        log_error("reload: %s", err.msg);
    struct wharf_reload r;
    if (wharf_conf_reload(w, &r, &err) < 0) {
        log_error("reload: refused, the running configuration stays: %s",
                  err.msg);
        log_redact(err.msg);
        char detail[ERROR_MSG_MAX + 16];
        snprintf(detail, sizeof(detail), "refused: %s", err.msg);
        serve_audit_reload(w, detail);
        return;
    }
    serve_apply_live(w, net);
    for (size_t i = 0; i < r.nlive; i++)
        log_info("reload: %s changed, applied", r.live[i]);
    for (size_t i = 0; i < r.nrestart; i++)
        log_warn("reload: %s changed, takes effect at restart", r.restart[i]);
    char live[1024], later[1024], detail[2100];
    serve_join(r.live, r.nlive, live, sizeof(live));
    serve_join(r.restart, r.nrestart, later, sizeof(later));
    snprintf(detail, sizeof(detail), "applied: %s; at restart: %s",
             r.nlive ? live : "-", r.nrestart ? later : "-");
    log_info("reload of %s done (%s)", w->conf_path, detail);
    serve_audit_reload(w, detail);
}

/* Wait for SIGTERM or SIGINT (returned), reloading on every SIGHUP. */
static int serve_wait(struct wharf *w, struct net_server *net,
                      const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) == 0 && sig == SIGHUP)
        serve_reload(w, net);
    return sig;
}

/* ---- the server ----------------------------------------------------------------- */

static int serve_loop(struct wharf *w, const sigset_t *set)
{
    struct error err = {0};
    struct store *st = store_open(w->db_path, &err);
    if (st == NULL || store_leases_release(st, &err) < 0 ||
        store_release_held(st, &err) < 0) {
        store_close(st);
        log_error("%s", err.msg);
        return cli_fail("%s", err.msg);
    }
    store_close(st);
    serve_checkpoint(w);
    serve_health_start(w);
    struct engine *e = NULL;
    struct partner_routes *hooks = NULL;
    struct net_server *net = net_server_new(w, &err);
    if (net != NULL)
        net_server_set_health(net, serve_health, NULL);
    /* Bound before the sandbox (ports below 1024), every thread started
     * after it (threads inherit Landlock): the key process watcher, the
     * engine's, security's (detector, notifier), then the listeners',
     * which stop first. The partner routes share the engine's live
     * connectors, so they are routed once the engine runs (before the
     * listeners start). */
    char state[PATH_MAX];
    snprintf(state, sizeof(state), "%s/state", w->dir);
    if (net == NULL || api_register(net, w, &err) < 0 ||
        console_register(net, &err) < 0 ||
        net_server_bind(net, &err) < 0 ||
        net_ssh_agent_start(state, &err) < 0 || sandbox_enter(w, &err) < 0 ||
        keyproc_watch(&err) < 0 || (e = engine_start(w, &err)) == NULL ||
        (hooks = partner_routes_register(net, e, &err)) == NULL ||
        security_start(w, &err) < 0 || net_server_start(net, &err) < 0) {
        net_server_free(net);
        partner_routes_free(hooks);
        security_stop();
        engine_stop(e);
        net_ssh_agent_stop();
        log_error("%s", err.msg);
        return cli_fail("%s", err.msg);
    }
    serve_upkeep_conf(w);
    struct upkeep *up = upkeep_start(w, net, &err);
    if (up == NULL)
        log_error("periodic checks and purges do not run: %s", err.msg);
    log_info("wharf %s serving %s (pid %d, master key %s)", WHARF_VERSION,
             w->dir, (int)getpid(), vault_active_id(w->vault));
    int sig = serve_wait(w, net, set);
    log_info("signal %d: stopping", sig);
    upkeep_stop(up);
    net_server_free(net);
    partner_routes_free(hooks);
    api_shutdown();
    security_stop();
    engine_stop(e);
    net_ssh_agent_stop();
    serve_checkpoint(w);
    return EXIT_OK;
}

/* ---- the key process (vault/keyproc.h) ------------------------------------ */

static int serve_keys_confine(void *arg, struct error *err)
{
    return sandbox_keys(arg, err);
}

/* The key process's main: the data dir's keystore and TLS listener key,
 * read before it confines itself (core/sandbox.h: sandbox_keys). */
static int serve_keys_main(void *arg, int fd)
{
    struct error err = {0};
    struct wharf *w = cli_wharf_open(arg, &err);
    if (w == NULL) {
        keyproc_child_fail(err.msg);    /* serve says it, once */
        return EXIT_FAIL;
    }
    char tls[4200];
    snprintf(tls, sizeof(tls), w->conf.tls_key[0] == '/' ? "%.0s%s" : "%s/%s",
             w->dir, w->conf.tls_key);
    const char *paths[1] = { tls };
    struct keyproc_confine confine = { serve_keys_confine, w };
    int rc = keyproc_serve(w->vault, paths, 1, &confine, fd);
    wharf_close(w);
    return rc;
}

/* Fork the key processes (one per core: vault/keyproc.h) before anything
 * else is read: from here on this process's vault forwards to them. */
static int serve_fork_keys(const char *data, struct error *err)
{
    return keyproc_start(serve_keys_main, (void *)data,
                         keyproc_default_count(), err);
}

/* On a shared store: this keystore's active key must be the cluster's
 * (see the top). 0, or -1 with err saying what to copy. */
static int serve_cluster_key(struct wharf *w, struct error *err)
{
    if (!wharf_store_shared(w))
        return 0;
    struct store *st = store_open(w->db_path, err);
    char *key = NULL;
    int rc = st ? store_setting_get(st, ROTATE_CLUSTER_KEY, &key, err) : -1;
    store_close(st);
    if (rc == 0 && key != NULL && strcmp(key, vault_active_id(w->vault)))
        rc = error_set(err, "the keystore %s has master key %s active, but "
                       "the cluster moved to master key %s at a `wharf key "
                       "rotate` on another node: copy that node's keystore "
                       "(mode 0600) over this one, then start again",
                       w->keystore_path, vault_active_id(w->vault), key);
    free(key);
    return rc;
}

static int serve_start(const char *data, bool to_stderr, const sigset_t *set)
{
    struct error err = {0};
    if (serve_fork_keys(data, &err) < 0)
        return cli_fail("%s", err.msg);
    struct wharf *w = cli_wharf_open(data, &err);
    if (w == NULL) {
        keyproc_stop();
        return cli_fail("%s", err.msg);
    }
    int lockfd = -1, rc;
    if (sandbox_drop_root(w, &err) < 0 ||
        cli_lock(w->dir, "serve", &lockfd, &err) < 0 ||
        serve_cluster_key(w, &err) < 0 ||
        log_open(w->log_dir, w->conf.log_level, to_stderr, &err) < 0) {
        rc = cli_fail("%s", err.msg);
    } else {
        log_set_rotation(w->conf.log_max_bytes, w->conf.log_keep);
        log_set_repeat_interval(w->conf.log_repeat_ms);
        alerts_attach(w);       /* after the key process was forked */
        alerts_set_logging(true);
        rc = serve_loop(w, set);
        alerts_attach(NULL);
        health_stop();
        log_close();
    }
    if (lockfd >= 0)
        close(lockfd);
    wharf_close(w);
    if (keyproc_lost())
        rc = EXIT_FAIL;             /* the key process died: not a clean stop */
    keyproc_stop();
    return rc;
}

static int serve_run(int argc, char **argv)
{
    static const char *const opts[] = { "--quiet", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_serve, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos > 0)
        return cli_usage(&cmd_serve, "unexpected argument %s", a.pos[0]);
    struct error err = {0};
    if (serve_no_core(&err) < 0)
        return cli_fail("%s", err.msg);
    /* Blocked before anything else: from here on SIGHUP, SIGTERM and
     * SIGINT wait for sigwait() (threads inherit the mask). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return serve_start(a.data, !a.flags[0], &set);
}

const struct cli_cmd cmd_serve = {
    "serve", "run the gateway: sources, deliveries, retries, HTTPS listeners",
    "wharf serve [--data DIR] [--quiet]\n"
    "  Runs the engine and the admin and partner HTTPS listeners of\n"
    "  wharf.conf until SIGTERM/SIGINT. Logs to DIR/logs/wharf.log and,\n"
    "  unless --quiet, to stderr. SIGHUP reopens the log file (after\n"
    "  logrotate renamed it) and reloads wharf.conf: log_level, log_max_bytes,\n"
    "  log_keep, log_repeat_seconds, health_failing_seconds, the ban_*,\n"
    "  alert_* and notify_* keys apply at once, other changes at the next\n"
    "  start (logged). Alerts are checked and notifications sent while it\n"
    "  runs (docs/operations.md, Alerts and notifications).\n"
    "  Core dumps are off.\n",
    serve_run,
};
