/*
 * serve.c - `wharf init` and `wharf serve`.
 *
 * serve holds DIR/wharf.lock for its lifetime (one server per data dir),
 * logs to DIR/logs/wharf.log and to stderr, releases the leases a killed
 * predecessor left (SQLite is single-node), starts the engine and waits for
 * SIGTERM or SIGINT, on which it finishes the current batches and exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/engine.h"
#include "core/wharf.h"
#include "store/store.h"
#include "util/log.h"
#include "vault/vault.h"

static int init_run(int argc, char **argv)
{
    static const char *const opts[] = { "--log-level=", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_init, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos > 0)
        return cli_usage(&cmd_init, "unexpected argument %s", a.pos[0]);
    struct wharf_init_opts o = { .log_level = a.values[0] };
    struct error err = {0};
    if (wharf_init(a.data, &o, &err) < 0)
        return cli_fail("%s", err.msg);
    printf("initialized %s\n", a.data);
    return EXIT_OK;
}

const struct cli_cmd cmd_init = {
    "init", "create a data directory (keystore, database, folders)",
    "wharf init [--data DIR] [--log-level LEVEL]\n"
    "  Creates DIR (default ./wharf-data) with wharf.conf, a new master key\n"
    "  (keystore, mode 0600), wharf.db, payloads/ and logs/. Never overwrites.\n"
    "  LEVEL: error, warning, info (default), debug, trace.\n",
    init_run,
};

static int serve_loop(struct wharf *w)
{
    struct error err = {0};
    struct store *st = store_open(w->db_path, &err);
    if (st == NULL || store_leases_release(st, &err) < 0) {
        store_close(st);
        log_error("%s", err.msg);
        return cli_fail("%s", err.msg);
    }
    store_close(st);
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
    log_info("wharf %s serving %s (pid %d, master key %s)", WHARF_VERSION,
             w->dir, (int)getpid(), vault_active_id(w->vault));
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping", sig);
    engine_stop(e);
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
    "serve", "run the gateway: sources, deliveries, retries",
    "wharf serve [--data DIR] [--quiet]\n"
    "  Runs until SIGTERM/SIGINT. Logs to DIR/logs/wharf.log and, unless\n"
    "  --quiet, to stderr.\n",
    serve_run,
};
