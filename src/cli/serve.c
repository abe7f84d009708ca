/*
 * serve.c - `wharf init` and `wharf serve`.
 *
 * serve holds DIR/wharf.lock for its lifetime (one server per data dir),
 * logs to DIR/logs/wharf.log and to stderr, releases the leases a killed
 * predecessor left (SQLite is single-node), starts the engine and waits for
 * SIGTERM or SIGINT, on which it finishes the current batches and exits 0.
 * The HTTPS listeners (net/server.h) start after the engine and stop before
 * it; a listener that cannot start (address in use, bad certificate) makes
 * serve exit 1 with one line saying which and why.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "audit/audit.h"
#include "cli/cli.h"
#include "connectors/connector.h"
#include "core/engine.h"
#include "core/wharf.h"
#include "net/server.h"
#include "store/store.h"
#include "util/log.h"
#include "vault/vault.h"

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
                                        "--allowed-paths=", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_init, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos > 0)
        return cli_usage(&cmd_init, "unexpected argument %s", a.pos[0]);
    struct wharf_init_opts o = { .log_level = a.values[0],
                                 .admin_listen = a.values[1],
                                 .partner_listen = a.values[2],
                                 .allowed_paths = a.values[3] };
    struct error err = {0};
    if (wharf_init(a.data, &o, &err) < 0)
        return cli_fail("%s", err.msg);
    if (init_audit(a.data) != EXIT_OK)
        return EXIT_FAIL;
    printf("initialized %s\n", a.data);
    return cli_user_bootstrap(a.data);
}

const struct cli_cmd cmd_init = {
    "init", "create a data directory (keystore, database, folders)",
    "wharf init [--data DIR] [--log-level LEVEL] [--admin-listen IP:PORT]\n"
    "           [--partner-listen IP:PORT] [--allowed-paths DIR[,DIR...]]\n"
    "  Creates DIR (default ./wharf-data) with wharf.conf, a new master key\n"
    "  (keystore, mode 0600), wharf.db, payloads/, logs/ and a self-signed\n"
    "  TLS certificate for the listeners (tls/cert.pem, tls/key.pem).\n"
    "  Never overwrites.\n"
    "  LEVEL: error, warning, info (default), debug, trace.\n"
    "  --admin-listen    admin HTTPS listener (default 127.0.0.1:8443)\n"
    "  --partner-listen  partner HTTPS listener (default 127.0.0.1:4080)\n"
    "  --allowed-paths   the folders flows may name (file connectors, secret\n"
    "                    files); none by default (wharf.conf allowed_paths)\n",
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

static int serve_loop(struct wharf *w)
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
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);     /* threads inherit the mask */
    struct engine *e = engine_start(w, &err);
    if (e == NULL) {
        log_error("%s", err.msg);
        return cli_fail("%s", err.msg);
    }
    struct net_server *net = net_server_new(w, &err);
    struct partner_routes *hooks = NULL;
    if (net == NULL || api_register(net, w, &err) < 0 ||
        (hooks = partner_routes_register(net, w, &err)) == NULL ||
        net_server_start(net, &err) < 0) {
        net_server_free(net);
        partner_routes_free(hooks);
        engine_stop(e);
        log_error("%s", err.msg);
        return cli_fail("%s", err.msg);
    }
    log_info("wharf %s serving %s (pid %d, master key %s)", WHARF_VERSION,
             w->dir, (int)getpid(), vault_active_id(w->vault));
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping", sig);
    net_server_free(net);
    partner_routes_free(hooks);
    api_shutdown();
    engine_stop(e);
    serve_checkpoint(w);
    return EXIT_OK;
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
    struct wharf *w = wharf_open(a.data, &err);
    if (w == NULL)
        return cli_fail("%s", err.msg);
    int lockfd = -1, rc;
    if (cli_lock(w->dir, &lockfd, &err) < 0 ||
        log_open(w->log_dir, w->conf.log_level, !a.flags[0], &err) < 0) {
        rc = cli_fail("%s", err.msg);
    } else {
        log_set_rotation(w->conf.log_max_bytes, w->conf.log_keep);
        rc = serve_loop(w);
        log_close();
    }
    if (lockfd >= 0)
        close(lockfd);
    wharf_close(w);
    return rc;
}

const struct cli_cmd cmd_serve = {
    "serve", "run the gateway: sources, deliveries, retries, HTTPS listeners",
    "wharf serve [--data DIR] [--quiet]\n"
    "  Runs the engine and the admin and partner HTTPS listeners of\n"
    "  wharf.conf until SIGTERM/SIGINT. Logs to DIR/logs/wharf.log and,\n"
    "  unless --quiet, to stderr.\n",
    serve_run,
};
